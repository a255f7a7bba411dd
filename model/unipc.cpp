// Flow-matching UniPC, written from the UniPC paper (Zhao et al., 2023) and checked step by step
// against Wan 2.1's FlowUniPCMultistepScheduler (tests/fixtures/wan: the parity fixtures).
#include <ATen/ATen.h>

#include <cmath>
#include <deque>
#include <stdexcept>

#include "io/field_error.h"
#include "model/sampler.h"

namespace astraea {
namespace {

// lambda = log(alpha / sigma) with alpha = 1 - sigma: the half log-SNR of the flow-matching path.
double lambda_of(double sigma) { return std::log(1.0 - sigma) - std::log(sigma); }

// Solves A x = b (N x N, row-major) by Gaussian elimination with partial pivoting.
std::vector<double> solve(std::vector<double> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t c = 0; c < n; ++c) {
    size_t p = c;
    for (size_t r = c + 1; r < n; ++r)
      if (std::abs(a[r * n + c]) > std::abs(a[p * n + c])) p = r;
    for (size_t k = 0; k < n; ++k) std::swap(a[c * n + k], a[p * n + k]);
    std::swap(b[c], b[p]);
    for (size_t r = c + 1; r < n; ++r) {
      const double f = a[r * n + c] / a[c * n + c];
      for (size_t k = c; k < n; ++k) a[r * n + k] -= f * a[c * n + k];
      b[r] -= f * b[c];
    }
  }
  std::vector<double> x(n);
  for (size_t i = n; i-- > 0;) {
    double s = b[i];
    for (size_t k = i + 1; k < n; ++k) s -= a[i * n + k] * x[k];
    x[i] = s / a[i * n + i];
  }
  return x;
}

// The B(h) update's coefficients for ORDER: hh = -h, h_phi_1 = e^hh - 1, B_h = e^hh - 1, and the
// right-hand side b_k = h_phi_(k+1)(hh) k! / B_h of the order conditions.
struct Coefficients {
  double h_phi_1 = 0, b_h = 0;
  std::vector<double> b;
};
Coefficients coefficients(double h, int order) {
  Coefficients c;
  const double hh = -h;
  c.h_phi_1 = std::expm1(hh);
  c.b_h = std::expm1(hh);
  double h_phi_k = c.h_phi_1 / hh - 1, factorial = 1;
  for (int i = 1; i <= order; ++i) {
    c.b.push_back(h_phi_k * factorial / c.b_h);
    factorial *= i + 1;
    h_phi_k = h_phi_k / hh - 1 / factorial;
  }
  return c;
}

// The rows R[i][k] = rks[k]^i, i < N, over the first N of RKS.
std::vector<double> powers(const std::vector<double>& rks, size_t n) {
  std::vector<double> r(n * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t k = 0; k < n; ++k) r[i * n + k] = std::pow(rks[k], static_cast<double>(i));
  return r;
}

// What UniP (predicting from level FROM to FROM + 1) and UniC (correcting at FROM + 1) share: the
// step in lambda, its B(h) coefficients for ORDER, and the scaled differences D1_k of the older
// x0 predictions in OUTPUTS (newest last, the newest being the one at FROM).
struct Terms {
  double s0 = 0, st = 0;
  Coefficients c;
  std::vector<double> rks;
  std::vector<at::Tensor> d1s;
  /// The first-order update of X to level st with the newest x0 prediction M0.
  at::Tensor base(const at::Tensor& x, const at::Tensor& m0) const {
    return (st / s0) * x - (1.0 - st) * c.h_phi_1 * m0;
  }
};
Terms terms(const std::vector<double>& sigmas, int64_t from, const std::deque<at::Tensor>& outputs,
            int order) {
  Terms t;
  t.s0 = sigmas[from], t.st = sigmas[from + 1];
  const double l0 = lambda_of(t.s0), h = lambda_of(t.st) - l0;
  const auto& m0 = outputs.back();
  for (int k = 1; k < order; ++k) {
    const double rk = (lambda_of(sigmas[from - k]) - l0) / h;
    t.rks.push_back(rk);
    t.d1s.push_back((outputs[outputs.size() - 1 - k] - m0) / rk);
  }
  t.rks.push_back(1.0);
  t.c = coefficients(h, order);
  return t;
}

}  // namespace

UniPcGrid unipc_grid(int64_t steps, double shift) {
  if (steps < 1) throw FieldError("steps", "must be at least 1");
  if (!(shift > 0)) throw FieldError("shift", "must be positive");
  // The training grid's largest level, as the scheduler keeps it: float32 of 1 - 1/1000.
  const double sigma_max = static_cast<float>(1.0 - 1.0 / 1000.0);
  UniPcGrid g;
  for (int64_t i = 0; i < steps; ++i) {
    // np.linspace(sigma_max, 0, steps + 1)[i]: i * step + start, step = (0 - start) / steps.
    const double u = static_cast<double>(i) * ((0.0 - sigma_max) / static_cast<double>(steps)) + sigma_max;
    const double s = shift * u / (1.0 + (shift - 1.0) * u);
    g.timesteps.push_back(std::trunc(s * 1000.0));
    g.sigmas.push_back(static_cast<float>(s));
  }
  g.sigmas.push_back(0.0);
  return g;
}

at::Tensor sample_unipc(at::Tensor x, const std::vector<double>& sigmas, const VelocityFn& velocity,
                        const StepCallback& on_step, int order) {
  if (order < 1) throw FieldError("order", "must be at least 1");
  const int64_t steps = static_cast<int64_t>(sigmas.size()) - 1;
  x = x.to(at::kFloat);
  std::deque<at::Tensor> outputs;  // the x0 predictions of the last ORDER steps, newest last
  at::Tensor last_sample;
  int this_order = 0, lower_order_nums = 0;
  for (int64_t i = 0; i < steps; ++i) {
    const auto v = velocity(x, sigmas[i], i).to(x.device(), at::kFloat);
    const auto m = x - sigmas[i] * v;  // the x0 prediction
    if (i > 0) {                       // UniC: correct the predicted x with the model's output there
      const auto t = terms(sigmas, i - 1, outputs, this_order);
      const auto rhos =
          this_order == 1 ? std::vector<double>{0.5} : solve(powers(t.rks, t.rks.size()), t.c.b);
      auto corr = (m - outputs.back()) * rhos.back();
      for (size_t k = 0; k < t.d1s.size(); ++k) corr = corr + rhos[k] * t.d1s[k];
      x = t.base(last_sample, outputs.back()) - (1.0 - t.st) * t.c.b_h * corr;
    }
    outputs.push_back(m);
    if (static_cast<int>(outputs.size()) > order) outputs.pop_front();
    this_order = std::min<int>(order, static_cast<int>(steps - i));  // lower orders at the end
    this_order = std::min(this_order, lower_order_nums + 1);         // and while warming up
    last_sample = x;
    // UniP: predict the next x from the x0 predictions so far.
    const auto t = terms(sigmas, i, outputs, this_order);
    auto next = t.base(x, outputs.back());
    if (!t.d1s.empty()) {
      const size_t n = t.d1s.size();
      const auto rhos = this_order == 2
                            ? std::vector<double>{0.5}
                            : solve(powers(t.rks, n), std::vector<double>(t.c.b.begin(), t.c.b.begin() + n));
      auto pred = rhos[0] * t.d1s[0];
      for (size_t k = 1; k < n; ++k) pred = pred + rhos[k] * t.d1s[k];
      next = next - (1.0 - t.st) * t.c.b_h * pred;
    }
    x = next;
    lower_order_nums = std::min(lower_order_nums + 1, order);
    if (on_step) on_step(i, steps);
  }
  return x;
}

}  // namespace astraea
