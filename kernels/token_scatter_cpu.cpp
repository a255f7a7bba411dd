#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/token_scatter.cuh"

namespace astraea::kernels {

namespace {
[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("scatter_tokens: " + what); }
}  // namespace

namespace detail {
void validate_scatter_tokens(const float* h, const int64_t* idx, int64_t k, const float* lse_sel,
                             int64_t heads, const float* sketch_new, int64_t sketch_dim,
                             const bf16* cache_out, const float* cache_lse, const float* cache_sketch,
                             const float* stale, int64_t n, int64_t dim) {
  constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max();  // one CTA per selected token; int columns
  if (n < 0 || n > kMaxIndex) fail("n must be in [0, 2^31 - 1], got " + std::to_string(n));
  if (k < 0 || k > n) fail("k must be in [0, n = " + std::to_string(n) + "], got " + std::to_string(k));
  if (dim < 0 || dim > kMaxIndex) fail("dim must be in [0, 2^31 - 1], got " + std::to_string(dim));
  if (sketch_dim < 0 || sketch_dim > kMaxIndex) {
    fail("sketch_dim must be in [0, 2^31 - 1], got " + std::to_string(sketch_dim));
  }
  if (k > 0 && (heads < 1 || heads > kMaxIndex))
    fail("heads must be in [1, 2^31 - 1], got " + std::to_string(heads));
  if (n > 0 && stale == nullptr) fail("stale must not be null");
  if (k > 0) {
    if (idx == nullptr) fail("idx must not be null");
    if (dim > 0 && cache_out == nullptr) fail("cache_out must not be null");
    if (lse_sel == nullptr || cache_lse == nullptr) fail("lse_sel and cache_lse must not be null");
    if (dim > 0 && h == nullptr) fail("h must not be null");
    if (sketch_dim > 0 && (sketch_new == nullptr || cache_sketch == nullptr)) {
      fail("sketch_new and cache_sketch must not be null");
    }
  }
}
}  // namespace detail

void scatter_tokens_cpu(const float* h, const bf16* y, const float* gate, const int64_t* idx, int64_t k,
                        const float* lse_sel, int64_t heads, const float* sketch_new, int64_t sketch_dim,
                        bf16* cache_out, float* cache_lse, float* cache_sketch, float* stale, int64_t n,
                        int64_t dim, Stream /*stream*/) {
  detail::validate_scatter_tokens(h, idx, k, lse_sel, heads, sketch_new, sketch_dim, cache_out, cache_lse,
                                  cache_sketch, stale, n, dim);
  for (int64_t r = 0; r < k; ++r) {
    if (idx[r] < 0 || idx[r] >= n || (r > 0 && idx[r] <= idx[r - 1])) {
      fail("idx must be ascending, unique and in [0, n): idx[" + std::to_string(r) +
           "] = " + std::to_string(idx[r]));
    }
  }
  for (int64_t i = 0; i < n; ++i) stale[i] += 1.0f;
  for (int64_t r = 0; r < k; ++r) {
    const int64_t i = idx[r];
    bf16* cache_row = cache_out + i * dim;
    for (int64_t c = 0; c < dim; ++c) {
      const float value = h[r * dim + c];
      // One rounding, as the kernel's fused multiply-add.
      const float updated =
          y != nullptr ? std::fma(bf16_to_float(y[r * dim + c]), gate != nullptr ? gate[c] : 1.0f, value) : value;
      cache_row[c] = float_to_bf16(updated);
    }
    double lse_sum = 0.0;
    for (int64_t head = 0; head < heads; ++head) lse_sum += lse_sel[head * k + r];
    cache_lse[i] = static_cast<float>(lse_sum / static_cast<double>(heads));
    for (int64_t c = 0; c < sketch_dim; ++c) cache_sketch[i * sketch_dim + c] = sketch_new[i * sketch_dim + c];
    stale[i] = 0.0f;
  }
}

}  // namespace astraea::kernels
