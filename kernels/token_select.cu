#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/detail/row_io.cuh"
#include "kernels/token_select.cuh"

namespace astraea::kernels {

namespace {

// Radix select over 32-bit keys, 8 bits a pass, most significant digit first.
constexpr int kDigitBits = 8;
constexpr int kBins = 1 << kDigitBits;
constexpr int kPasses = 32 / kDigitBits;
constexpr int kScoreThreads = 256;
constexpr int kMaxScoreBlocks = 1024;  // few enough that flushing the per-CTA histograms stays cheap
// One CTA ranks every token: no grid-wide synchronisation, and n ~ 1e5 keys (400 KB) stay in L2.
constexpr int kSelectThreads = 1024;
constexpr int kLoadsInFlight = 8;    // keys a thread loads before counting any: hides L2 latency
constexpr int kTokensPerThread = 4;  // consecutive tokens per thread in each compaction chunk

struct SelectTokensArgs {
  const float* lse;
  const float* sketch_new;
  const float* sketch_old;
  const float* stale;
  float* score_out;
  int64_t* idx_out;
  uint32_t* top_digit_histogram;  // workspace: kBins counters, zeroed before token_scores
  int sketch_dim;
  int n;
  int k;
  float w_lse;
  float w_stale;
};

/// Order-preserving map of a score to an unsigned key: a > b as floats iff key(a) > key(b). Negative
/// floats get all bits flipped, positive ones the sign bit set. NaN maps to 0, below -inf's 0x007FFFFF,
/// so NaN ranks lowest; -0 maps as +0 so that the two tie, as they compare on the CPU.
__device__ __forceinline__ uint32_t score_key(float score) {
  if (isnan(score)) return 0u;
  const uint32_t bits = score == 0.0f ? 0u : __float_as_uint(score);
  return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}

/// hist[bin] += 1 for every lane that has `count` set, with one shared atomic per distinct bin in the
/// warp: scores cluster, so most lanes of a warp hit the same bin. Every lane of the warp must call it.
__device__ __forceinline__ void count_in_bin(uint32_t* hist, bool count, uint32_t bin) {
  const unsigned voters = __ballot_sync(0xFFFFFFFFu, count);
  if (!count) return;
  const unsigned peers = __match_any_sync(voters, bin);
  if (static_cast<int>(threadIdx.x % 32) == __ffs(peers) - 1)
    atomicAdd(hist + bin, static_cast<uint32_t>(__popc(peers)));
}

/// One thread per token (sketch rows are a few floats, so a warp's rows are one contiguous span);
/// also counts the scores' top key digit into the workspace: the select's first pass, done grid-wide.
__global__ void __launch_bounds__(kScoreThreads) token_scores(const SelectTokensArgs a) {
  __shared__ uint32_t hist[kBins];
  for (int b = threadIdx.x; b < kBins; b += blockDim.x) hist[b] = 0;
  __syncthreads();
  // `base` is uniform over the CTA, so whole warps run each iteration, as count_in_bin needs.
  for (int base = blockIdx.x * blockDim.x; base < a.n; base += gridDim.x * blockDim.x) {
    const int i = base + threadIdx.x;
    float score = 0.0f;
    if (i < a.n) {
      const float* now = a.sketch_new + static_cast<int64_t>(i) * a.sketch_dim;
      const float* before = a.sketch_old + static_cast<int64_t>(i) * a.sketch_dim;
      float squares = 0.0f;
      for (int c = 0; c < a.sketch_dim; ++c) {
        const float d = __ldg(now + c) - __ldg(before + c);
        squares = __fmaf_rn(d, d, squares);
      }
      score = a.w_lse * __ldg(a.lse + i) * sqrtf(squares) + a.w_stale * expf(__ldg(a.stale + i));
      a.score_out[i] = score;
    }
    count_in_bin(hist, i < a.n, score_key(score) >> (32 - kDigitBits));
  }
  __syncthreads();
  for (int b = threadIdx.x; b < kBins; b += blockDim.x) {
    if (hist[b] != 0) atomicAdd(a.top_digit_histogram + b, hist[b]);
  }
}

/// Run by warp 0: the digit whose bin holds the remaining-th highest key, counting from the top bin,
/// and how many keys of that bin are still to take. Lane l owns bins [8l, 8l + 8).
__device__ void find_digit(const uint32_t* hist, uint32_t remaining, uint32_t* digit,
                           uint32_t* remaining_in_bin) {
  constexpr int kBinsPerLane = kBins / 32;
  const int lane = threadIdx.x % 32;
  uint32_t counts[kBinsPerLane];
  uint32_t lane_sum = 0;
#pragma unroll
  for (int j = 0; j < kBinsPerLane; ++j) lane_sum += counts[j] = hist[lane * kBinsPerLane + j];
  uint32_t suffix = lane_sum;  // inclusive sum over lanes >= lane
#pragma unroll
  for (int offset = 1; offset < 32; offset *= 2) {
    const uint32_t other = __shfl_down_sync(0xFFFFFFFFu, suffix, offset);
    if (lane + offset < 32) suffix += other;
  }
  uint32_t above = suffix - lane_sum;  // keys in the bins of higher digits
  // Exactly one bin qualifies: the counts add up to at least `remaining`, which is >= 1.
#pragma unroll
  for (int j = kBinsPerLane - 1; j >= 0; --j) {
    if (above < remaining && above + counts[j] >= remaining) {
      *digit = static_cast<uint32_t>(lane * kBinsPerLane + j);
      *remaining_in_bin = remaining - above;
    }
    above += counts[j];
  }
}

/// hist[digit at `shift`] += 1 for every key whose digits above `shift` equal prefix's. shift <= 16.
__device__ void count_digits(const SelectTokensArgs& a, uint32_t prefix, int shift, uint32_t* hist) {
  const uint32_t high_mask = ~0u << (shift + kDigitBits);
  for (int base = 0; base < a.n; base += blockDim.x * kLoadsInFlight) {
    uint32_t keys[kLoadsInFlight];
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      const int i = base + u * blockDim.x + threadIdx.x;
      keys[u] = i < a.n ? score_key(__ldg(a.score_out + i)) : 0u;
    }
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      const int i = base + u * blockDim.x + threadIdx.x;
      const bool match = i < a.n && ((keys[u] ^ prefix) & high_mask) == 0;
      count_in_bin(hist, match, (keys[u] >> shift) & (kBins - 1));
    }
  }
}

/// Exclusive prefix sum over the CTA (in thread order) of a packed pair of 32-bit counts; *total gets
/// the CTA's sum. `warp_totals` (32 entries of shared memory) may be reused right after it returns.
__device__ unsigned long long block_exclusive_scan(unsigned long long value, unsigned long long* warp_totals,
                                                   unsigned long long* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  unsigned long long inclusive = value;
#pragma unroll
  for (int offset = 1; offset < 32; offset *= 2) {
    const unsigned long long other = __shfl_up_sync(0xFFFFFFFFu, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  if (lane == 31) warp_totals[warp] = inclusive;
  __syncthreads();
  unsigned long long before = 0, sum = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) {
    const unsigned long long t = warp_totals[w];
    if (w < warp) before += t;
    sum += t;
  }
  __syncthreads();
  *total = sum;
  return before + inclusive - value;
}

/// One CTA: the k-th highest key by radix select (the first pass's histogram comes from token_scores),
/// then a stable compaction in index order of every token above it and the first tokens equal to it.
__global__ void __launch_bounds__(kSelectThreads) top_k_indices(const SelectTokensArgs a) {
  __shared__ uint32_t hist[kBins];
  __shared__ uint32_t chosen_digit, chosen_remaining;
  __shared__ unsigned long long warp_totals[32];

  uint32_t prefix = 0;                              // the threshold key's digits found so far
  uint32_t remaining = static_cast<uint32_t>(a.k);  // keys still to take among those matching prefix
  for (int pass = 0; pass < kPasses; ++pass) {
    const int shift = 32 - kDigitBits * (pass + 1);
    if (pass == 0) {
      for (int b = threadIdx.x; b < kBins; b += blockDim.x) hist[b] = a.top_digit_histogram[b];
    } else {
      for (int b = threadIdx.x; b < kBins; b += blockDim.x) hist[b] = 0;
      __syncthreads();
      count_digits(a, prefix, shift, hist);
    }
    __syncthreads();
    if (threadIdx.x < 32) find_digit(hist, remaining, &chosen_digit, &chosen_remaining);
    __syncthreads();
    // Warp 0 writes these again only after the next pass's barriers, which every thread reaches after
    // reading.
    prefix |= chosen_digit << shift;
    remaining = chosen_remaining;
  }
  const uint32_t threshold = prefix;
  const uint32_t take_equal = remaining;  // in [1, count of keys == threshold]

  // Counts packed as (equal << 32) | above, so that one scan serves both.
  constexpr unsigned long long kEqual = 1ull << 32;
  unsigned long long carried = 0;  // over earlier chunks
  for (int base = 0; base < a.n; base += blockDim.x * kTokensPerThread) {
    const int first = base + threadIdx.x * kTokensPerThread;
    uint32_t keys[kTokensPerThread];
    unsigned long long mine = 0;
#pragma unroll
    for (int u = 0; u < kTokensPerThread; ++u) {
      const int i = first + u;
      keys[u] = i < a.n ? score_key(__ldg(a.score_out + i)) : 0u;
      if (i < a.n) mine += keys[u] > threshold ? 1ull : (keys[u] == threshold ? kEqual : 0ull);
    }
    unsigned long long chunk_total;
    const unsigned long long before = carried + block_exclusive_scan(mine, warp_totals, &chunk_total);
    uint32_t above = static_cast<uint32_t>(before), equal = static_cast<uint32_t>(before >> 32);
#pragma unroll
    for (int u = 0; u < kTokensPerThread; ++u) {
      const int i = first + u;
      if (i >= a.n) break;
      // Tokens selected before i: all those above the threshold, and the first take_equal equal ones.
      if (keys[u] > threshold) {
        a.idx_out[above + min(equal, take_equal)] = i;
        ++above;
      } else if (keys[u] == threshold) {
        if (equal < take_equal) a.idx_out[above + equal] = i;
        ++equal;
      }
    }
    carried += chunk_total;
  }
}

}  // namespace

size_t select_tokens_workspace_bytes(int64_t /*n*/) { return kBins * sizeof(uint32_t); }

void select_tokens(const float* lse, const float* sketch_new, const float* sketch_old, int64_t sketch_dim,
                   const float* stale, float w_lse, float w_stale, int64_t n, int64_t k, float* score_out,
                   int64_t* idx_out, void* workspace, size_t workspace_bytes, Stream stream) {
  detail::validate_select_tokens(lse, sketch_new, sketch_old, sketch_dim, stale, w_lse, w_stale, n, k,
                                 score_out, idx_out);
  const size_t needed = select_tokens_workspace_bytes(n);
  if (workspace == nullptr || workspace_bytes < needed || reinterpret_cast<uintptr_t>(workspace) % 4 != 0) {
    throw std::invalid_argument("select_tokens: workspace must be 4-byte aligned and hold " +
                                std::to_string(needed) + " bytes, got " + std::to_string(workspace_bytes));
  }
  SelectTokensArgs a{};
  a.lse = lse;
  a.sketch_new = sketch_new;
  a.sketch_old = sketch_old;
  a.stale = stale;
  a.score_out = score_out;
  a.idx_out = idx_out;
  a.top_digit_histogram = static_cast<uint32_t*>(workspace);
  a.sketch_dim = static_cast<int>(sketch_dim);
  a.n = static_cast<int>(n);
  a.k = static_cast<int>(k);
  a.w_lse = w_lse;
  a.w_stale = w_stale;
  ASTRAEA_CUDA_CHECK(cudaMemsetAsync(workspace, 0, needed, stream));
  const int grid = std::min(detail::ceil_div(n, kScoreThreads), kMaxScoreBlocks);
  token_scores<<<grid, kScoreThreads, 0, stream>>>(a);
  ASTRAEA_CUDA_CHECK_LAUNCH();
  top_k_indices<<<1, kSelectThreads, 0, stream>>>(a);
  ASTRAEA_CUDA_CHECK_LAUNCH();
}

}  // namespace astraea::kernels
