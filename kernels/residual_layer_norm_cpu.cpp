#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/residual_layer_norm.cuh"

namespace astraea::kernels {

namespace detail {
void validate_residual_layer_norm(const float* x, const bf16* y, const bf16* out, int64_t rows, int64_t dim,
                                  float eps) {
  constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max();  // one CTA per row; int columns
  const auto fail = [](const std::string& what) { throw std::invalid_argument("residual_layer_norm: " + what); };
  if (rows < 0 || rows > kMaxIndex) fail("rows must be in [0, 2^31 - 1], got " + std::to_string(rows));
  if (dim < 0 || dim > kMaxIndex) fail("dim must be in [0, 2^31 - 1], got " + std::to_string(dim));
  if (!(eps >= 0.0f) || !std::isfinite(eps)) fail("eps must be finite and >= 0, got " + std::to_string(eps));
  if (rows > 0 && dim > 0 && x == nullptr && (y != nullptr || out != nullptr)) fail("x must not be null");
}
}  // namespace detail

void residual_layer_norm_cpu(float* x, const bf16* y, const float* gate, const float* mul, const float* add, bf16* out,
                             int64_t rows, int64_t dim, float eps, Stream /*stream*/) {
  detail::validate_residual_layer_norm(x, y, out, rows, dim, eps);
  for (int64_t r = 0; r < rows; ++r) {
    float* x_row = x + r * dim;
    if (y != nullptr) {
      const bf16* y_row = y + r * dim;
      // One rounding, as the kernel's fused multiply-add: x stays bit-identical between the two.
      for (int64_t c = 0; c < dim; ++c) {
        x_row[c] = std::fma(bf16_to_float(y_row[c]), gate != nullptr ? gate[c] : 1.0f, x_row[c]);
      }
    }
    if (out == nullptr) continue;
    double sum = 0.0;
    for (int64_t c = 0; c < dim; ++c) sum += x_row[c];
    const double mean = sum / static_cast<double>(dim);
    double squares = 0.0;
    for (int64_t c = 0; c < dim; ++c) squares += (x_row[c] - mean) * (x_row[c] - mean);
    const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(dim) + eps);
    bf16* out_row = out + r * dim;
    for (int64_t c = 0; c < dim; ++c) {
      const double scaled = (x_row[c] - mean) * rstd * (mul != nullptr ? mul[c] : 1.0f);
      out_row[c] = float_to_bf16(static_cast<float>(scaled + (add != nullptr ? add[c] : 0.0f)));
    }
  }
}

}  // namespace astraea::kernels
