#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/token_select.cuh"

namespace astraea::kernels {

namespace {
[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("select_tokens: " + what); }
}  // namespace

namespace detail {
void validate_select_tokens(const float* lse, const float* sketch_new, const float* sketch_old,
                            int64_t sketch_dim, const float* stale, float w_lse, float w_stale, int64_t n,
                            int64_t k, const float* score_out, const int64_t* idx_out) {
  constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max();  // int indices in the kernels
  // One CTA ranks all tokens: meant for the ~1e5 of a video latent, and far from int overflow.
  constexpr int64_t kMaxTokens = int64_t{1} << 24;
  if (n < 1 || n > kMaxTokens) fail("n must be in [1, 2^24], got " + std::to_string(n));
  if (k < 1 || k > n) fail("k must be in [1, n = " + std::to_string(n) + "], got " + std::to_string(k));
  if (sketch_dim < 0 || sketch_dim > kMaxIndex / n) {
    fail("sketch_dim must be >= 0 with n * sketch_dim < 2^31, got " + std::to_string(sketch_dim));
  }
  if (!std::isfinite(w_lse) || !std::isfinite(w_stale)) fail("w_lse and w_stale must be finite");
  if (lse == nullptr) fail("lse must not be null");
  if (stale == nullptr) fail("stale must not be null");
  if (sketch_dim > 0 && (sketch_new == nullptr || sketch_old == nullptr)) {
    fail("sketch_new and sketch_old must not be null");
  }
  if (score_out == nullptr) fail("score_out must not be null");
  if (idx_out == nullptr) fail("idx_out must not be null");
}
}  // namespace detail

void select_top_scores_cpu(const float* score, int64_t n, int64_t k, int64_t* idx_out) {
  if (n < 1 || k < 1 || k > n)
    fail("k must be in [1, n], got k = " + std::to_string(k) + ", n = " + std::to_string(n));
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(score[i])) fail("score[" + std::to_string(i) + "] is NaN");
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  // Higher score first; among equal scores the lower index. -0 == +0 here, as in the kernel's keys.
  const auto before = [score](int64_t a, int64_t b) {
    return score[a] > score[b] || (score[a] == score[b] && a < b);
  };
  std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), before);
  std::sort(order.begin(), order.begin() + k);
  std::copy_n(order.begin(), k, idx_out);
}

void select_tokens_cpu(const float* lse, const float* sketch_new, const float* sketch_old, int64_t sketch_dim,
                       const float* stale, float w_lse, float w_stale, int64_t n, int64_t k, float* score_out,
                       int64_t* idx_out, void* /*workspace*/, size_t /*workspace_bytes*/, Stream /*stream*/) {
  detail::validate_select_tokens(lse, sketch_new, sketch_old, sketch_dim, stale, w_lse, w_stale, n, k,
                                 score_out, idx_out);
  for (int64_t i = 0; i < n; ++i) {
    double squares = 0.0;
    for (int64_t c = 0; c < sketch_dim; ++c) {
      const double d = static_cast<double>(sketch_new[i * sketch_dim + c]) - sketch_old[i * sketch_dim + c];
      squares += d * d;
    }
    const double score = static_cast<double>(w_lse) * lse[i] * std::sqrt(squares) +
                         static_cast<double>(w_stale) * std::exp(static_cast<double>(stale[i]));
    score_out[i] = static_cast<float>(score);
  }
  select_top_scores_cpu(score_out, n, k, idx_out);
}

}  // namespace astraea::kernels
