#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/rms_norm_rope.cuh"

namespace astraea::kernels {

namespace {
[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("rms_norm_rope: " + what); }
}  // namespace

namespace detail {
void validate_rms_norm_rope(const bf16* src, int64_t src_row_stride, const float* weight, const float* inv_freq,
                            const int64_t* positions, int64_t grid_f, int64_t grid_h, int64_t grid_w, int64_t heads, int64_t head_dim, float eps,
                            const bf16* out, int64_t tokens) {
  constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max();  // one CTA per token; int columns
  constexpr int64_t kMaxHeadDim = 8192;  // the (cos, sin) table of one token lives in shared memory
  if (tokens < 0 || tokens > kMaxIndex) fail("tokens must be in [0, 2^31 - 1], got " + std::to_string(tokens));
  if (head_dim < 0 || head_dim % 2 != 0) fail("head_dim must be even and >= 0, got " + std::to_string(head_dim));
  if (head_dim > kMaxHeadDim) fail("head_dim must be <= 8192, got " + std::to_string(head_dim));
  if (heads < 0 || (head_dim > 0 && heads > kMaxIndex / head_dim)) {
    fail("heads must be >= 0 with heads * head_dim < 2^31, got " + std::to_string(heads));
  }
  const int64_t dim = heads * head_dim;
  if (src_row_stride < dim) {
    fail("src_row_stride (" + std::to_string(src_row_stride) + ") must be >= heads * head_dim (" + std::to_string(dim) +
         ")");
  }
  if (!(eps >= 0.0f) || !std::isfinite(eps)) fail("eps must be finite and >= 0, got " + std::to_string(eps));
  if (inv_freq != nullptr) {
    if (grid_f < 1 || grid_h < 1 || grid_w < 1) fail("grid_f, grid_h and grid_w must be >= 1 with inv_freq");
    if (positions != nullptr) {
      // Gathered rows: any number of them, each naming a token of a grid that int indices can address.
      if (grid_h > kMaxIndex / grid_w || grid_f > kMaxIndex / (grid_h * grid_w)) {
        fail("the grid must have fewer than 2^31 tokens with positions");
      }
    } else if (tokens % grid_w != 0 || (tokens / grid_w) % grid_h != 0 || tokens / grid_w / grid_h != grid_f) {
      fail("tokens (" + std::to_string(tokens) + ") must equal grid_f * grid_h * grid_w (" + std::to_string(grid_f) +
           " x " + std::to_string(grid_h) + " x " + std::to_string(grid_w) + ") when inv_freq is given");
    }
  }
  if (tokens > 0 && dim > 0) {
    if (src == nullptr) fail("src must not be null");
    if (weight == nullptr) fail("weight must not be null");
    if (out == nullptr) fail("out must not be null");
  }
}
}  // namespace detail

void wan_rope_inv_freq(int64_t head_dim, double theta, float* inv_freq_out) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw std::invalid_argument("wan_rope_inv_freq: head_dim must be even and > 0, got " + std::to_string(head_dim));
  }
  const int64_t pairs = head_dim / 2;
  const int64_t pairs_h = pairs / 3;            // rows and columns get a third each,
  const int64_t pairs_t = pairs - 2 * pairs_h;  // frames the rest
  const int64_t axis_start[3] = {0, pairs_t, pairs_t + pairs_h};
  const int64_t axis_pairs[3] = {pairs_t, pairs_h, pairs_h};
  for (int axis = 0; axis < 3; ++axis) {
    for (int64_t k = 0; k < axis_pairs[axis]; ++k) {
      // rope_params: 1 / theta^(arange(0, 2 c_a, 2) / (2 c_a)), in float64 there too.
      const double exponent = static_cast<double>(k) / static_cast<double>(axis_pairs[axis]);
      inv_freq_out[axis_start[axis] + k] = static_cast<float>(1.0 / std::pow(theta, exponent));
    }
  }
}

void rms_norm_rope_cpu(const bf16* src, int64_t src_row_stride, const float* weight, const float* inv_freq,
                       const int64_t* positions, int64_t grid_f, int64_t grid_h, int64_t grid_w, int64_t heads, int64_t head_dim, float eps,
                       bf16* out, int64_t tokens, Stream /*stream*/) {
  detail::validate_rms_norm_rope(src, src_row_stride, weight, inv_freq, positions, grid_f, grid_h, grid_w, heads, head_dim, eps,
                                 out, tokens);
  const int64_t dim = heads * head_dim;
  const int64_t pairs = head_dim / 2;
  const int64_t pairs_h = pairs / 3;
  const int64_t pairs_t = pairs - 2 * pairs_h;
  for (int64_t t = 0; t < tokens; ++t) {
    const bf16* row = src + t * src_row_stride;
    double squares = 0.0;
    for (int64_t c = 0; c < dim; ++c) squares += static_cast<double>(bf16_to_float(row[c])) * bf16_to_float(row[c]);
    const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(dim) + eps);
    double position[3] = {0.0, 0.0, 0.0};  // frame, row, column on the latent grid
    if (inv_freq != nullptr) {
      const int64_t token = positions != nullptr ? positions[t] : t;
      if (token < 0 || token >= grid_f * grid_h * grid_w) {
        throw std::invalid_argument("rms_norm_rope: positions[" + std::to_string(t) + "] = " + std::to_string(token) +
                                    " is outside the grid");
      }
      position[0] = static_cast<double>(token / (grid_h * grid_w));
      position[1] = static_cast<double>((token / grid_w) % grid_h);
      position[2] = static_cast<double>(token % grid_w);
    }
    for (int64_t c = 0; c < dim; c += 2) {
      double v0 = bf16_to_float(row[c]) * rstd * weight[c];
      double v1 = bf16_to_float(row[c + 1]) * rstd * weight[c + 1];
      if (inv_freq != nullptr) {
        const int64_t j = (c % head_dim) / 2;
        const int axis = j < pairs_t ? 0 : (j < pairs_t + pairs_h ? 1 : 2);
        const double angle = position[axis] * static_cast<double>(inv_freq[j]);
        const double cos_a = std::cos(angle), sin_a = std::sin(angle);
        const double r0 = v0 * cos_a - v1 * sin_a;
        const double r1 = v0 * sin_a + v1 * cos_a;
        v0 = r0;
        v1 = r1;
      }
      out[t * dim + c] = float_to_bf16(static_cast<float>(v0));
      out[t * dim + c + 1] = float_to_bf16(static_cast<float>(v1));
    }
  }
}

}  // namespace astraea::kernels
