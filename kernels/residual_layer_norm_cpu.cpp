#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

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

void validate_gather_residual_layer_norm(const GatherLayerNormArgs& a) {
  constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max();
  const auto fail = [](const std::string& what) { throw std::invalid_argument("gather_residual_layer_norm: " + what); };
  if (a.rows < 0 || a.rows > kMaxIndex) fail("rows must be in [0, 2^31 - 1], got " + std::to_string(a.rows));
  if (a.dim < 0 || a.dim > kMaxIndex) fail("dim must be in [0, 2^31 - 1], got " + std::to_string(a.dim));
  if (!(a.eps >= 0.0f) || !std::isfinite(a.eps)) fail("eps must be finite and >= 0, got " + std::to_string(a.eps));
  if (a.sketch != nullptr && (a.sketch_dim < 1 || a.sketch_dim > kMaxSketchDim)) {
    fail("sketch_dim must be in [1, " + std::to_string(kMaxSketchDim) + "], got " + std::to_string(a.sketch_dim));
  }
  if (a.rows == 0 || a.dim == 0) return;
  if (a.src == nullptr) fail("src must not be null");
  if (a.sketch != nullptr && a.proj == nullptr) fail("proj must not be null with a sketch");
}
}  // namespace detail

namespace {

/// out = bf16(LN(row) * mul + add), statistics in double.
void normalise_row(const float* row, int64_t dim, const float* mul, const float* add, float eps, bf16* out) {
  double sum = 0.0;
  for (int64_t c = 0; c < dim; ++c) sum += row[c];
  const double mean = sum / static_cast<double>(dim);
  double squares = 0.0;
  for (int64_t c = 0; c < dim; ++c) squares += (row[c] - mean) * (row[c] - mean);
  const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(dim) + eps);
  for (int64_t c = 0; c < dim; ++c) {
    const double scaled = (row[c] - mean) * rstd * (mul != nullptr ? mul[c] : 1.0f);
    out[c] = float_to_bf16(static_cast<float>(scaled + (add != nullptr ? add[c] : 0.0f)));
  }
}

/// row += y * gate with one rounding, as the kernel's fused multiply-add: rows stay bit-identical.
void add_residual(float* row, const bf16* y, const float* gate, int64_t dim) {
  for (int64_t c = 0; c < dim; ++c) row[c] = std::fma(bf16_to_float(y[c]), gate != nullptr ? gate[c] : 1.0f, row[c]);
}

}  // namespace

void residual_layer_norm_cpu(float* x, const bf16* y, const float* gate, const float* mul, const float* add, bf16* out,
                             int64_t rows, int64_t dim, float eps, Stream /*stream*/) {
  detail::validate_residual_layer_norm(x, y, out, rows, dim, eps);
  for (int64_t r = 0; r < rows; ++r) {
    float* x_row = x + r * dim;
    if (y != nullptr) add_residual(x_row, y + r * dim, gate, dim);
    if (out != nullptr) normalise_row(x_row, dim, mul, add, eps, out + r * dim);
  }
}

void gather_residual_layer_norm_cpu(const GatherLayerNormArgs& a, Stream /*stream*/) {
  detail::validate_gather_residual_layer_norm(a);
  std::vector<float> row(static_cast<size_t>(a.dim));
  for (int64_t r = 0; r < a.rows; ++r) {
    const int64_t i = a.idx != nullptr ? a.idx[r] : r;
    if (i < 0) throw std::invalid_argument("gather_residual_layer_norm: idx[" + std::to_string(r) + "] = " + std::to_string(i) + " is negative");
    for (int64_t c = 0; c < a.dim; ++c) row[c] = bf16_to_float(a.src[i * a.dim + c]);
    if (a.y != nullptr) add_residual(row.data(), a.y + r * a.dim, a.gate, a.dim);
    if (a.h != nullptr) std::copy(row.begin(), row.end(), a.h + r * a.dim);
    if (a.sketch != nullptr) {
      for (int64_t j = 0; j < a.sketch_dim; ++j) {
        double dot = 0.0;
        for (int64_t c = 0; c < a.dim; ++c) dot += static_cast<double>(row[c]) * bf16_to_float(a.proj[j * a.dim + c]);
        a.sketch[r * a.sketch_dim + j] = static_cast<float>(dot);
      }
    }
    if (a.out != nullptr) normalise_row(row.data(), a.dim, a.mul, a.add, a.eps, a.out + r * a.dim);
  }
}

}  // namespace astraea::kernels
