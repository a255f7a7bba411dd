#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/attention_merge.cuh"

namespace astraea::kernels {

namespace {
[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("merge_attention_splits: " + what);
}
}  // namespace

namespace detail {
void validate_merge_attention_splits(const bf16* parts, const float* part_lse, int64_t batch, int64_t splits,
                                     int64_t rows, int64_t heads, int64_t head_dim, const bf16* out) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();  // grid sizes and int columns
  const auto check_range = [](const char* name, int64_t value, int64_t lo) {
    if (value < lo || value > kMax) {
      fail(std::string(name) + " must be in [" + std::to_string(lo) + ", 2^31 - 1], got " +
           std::to_string(value));
    }
  };
  check_range("batch", batch, 0);
  check_range("splits", splits, 1);
  check_range("rows", rows, 0);
  check_range("heads", heads, 1);
  check_range("head_dim", head_dim, 1);
  if (heads * head_dim > kMax) fail("heads * head_dim must be under 2^31");
  if (batch > 65535) fail("batch must be at most 65535, got " + std::to_string(batch));
  if (batch * rows > 0 && (parts == nullptr || part_lse == nullptr || out == nullptr)) {
    fail("parts, part_lse and out must not be null");
  }
}
}  // namespace detail

void merge_attention_splits_cpu(const bf16* parts, const float* part_lse, int64_t batch, int64_t splits,
                                int64_t rows, int64_t heads, int64_t head_dim, bf16* out, float* lse,
                                Stream /*stream*/) {
  detail::validate_merge_attention_splits(parts, part_lse, batch, splits, rows, heads, head_dim, out);
  const int64_t width = heads * head_dim;
  std::vector<double> weight(static_cast<size_t>(splits));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t h = 0; h < heads; ++h) {
        const auto l = [&](int64_t s) {
          return static_cast<double>(part_lse[((b * splits + s) * heads + h) * rows + r]);
        };
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t s = 0; s < splits; ++s) m = std::max(m, l(s));
        double total = 0.0;
        for (int64_t s = 0; s < splits; ++s) {
          weight[s] = m == -std::numeric_limits<double>::infinity() ? 0.0 : std::exp(l(s) - m);
          total += weight[s];
        }
        for (int64_t c = h * head_dim; c < (h + 1) * head_dim; ++c) {
          double sum = 0.0;
          for (int64_t s = 0; s < splits; ++s) {
            sum += weight[s] * bf16_to_float(parts[((b * splits + s) * rows + r) * width + c]);
          }
          out[(b * rows + r) * width + c] =
              float_to_bf16(total > 0.0 ? static_cast<float>(sum / total) : 0.0f);
        }
        if (lse != nullptr)
          lse[(b * heads + h) * rows + r] = static_cast<float>(total > 0.0 ? m + std::log(total) : m);
      }
    }
  }
}

}  // namespace astraea::kernels
