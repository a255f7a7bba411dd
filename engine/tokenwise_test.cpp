// The token-wise engine on the CPU: budget 1 is the dense model, budget 0 reuses the last output,
// budgets between compute that share of tokens and leave the rest at their cached outputs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

#include "engine/generate.h"
#include "engine/tiny_model_fixture.h"
#include "model/block_ops.h"
#include "model/denoiser.h"
#include "model/torch_compat.h"

namespace astraea {
namespace {

using Fixture = TinyModelFixture;

TEST(TokenEngine, BudgetOneIsTheDenseModel) {
  Fixture f;
  TokenEngineState state;
  auto sparse = f.model.forward_tokenwise(f.x, 700.0, f.ctx, 1.0, {}, state);
  EXPECT_TRUE(at::equal(sparse, f.model.forward(f.x, 700.0, f.ctx)));
  EXPECT_EQ(state.computed_tokens, state.total_tokens);
  ASSERT_EQ(state.blocks.size(), static_cast<size_t>(f.c.layers));
  // Memory: one token tensor per block plus lse, stale and an 8-float sketch per token.
  const int64_t n = 64;
  EXPECT_EQ(state.bytes(), f.c.layers * (n * f.c.dim * 4 + n * (1 + 1 + kSketchDim) * 4));
}

TEST(TokenEngine, BudgetZeroReusesTheLastOutputExactly) {
  Fixture f;
  TokenEngineState state;
  auto first = f.model.forward_tokenwise(f.x, 700.0, f.ctx, 1.0, {}, state);
  auto again = f.model.forward_tokenwise(f.x + 1.0, 500.0, f.ctx, 0.0, {}, state);
  EXPECT_TRUE(at::equal(first, again));
  TokenEngineState empty;
  EXPECT_THROW(f.model.forward_tokenwise(f.x, 700.0, f.ctx, 0.0, {}, empty), c10::Error);
}

TEST(TokenEngine, PartialBudgetComputesItsShareAndKeepsTheRestCached) {
  Fixture f;
  TokenEngineState state;
  f.model.forward_tokenwise(f.x, 700.0, f.ctx, 1.0, {}, state);
  const auto before = state.blocks[0].out.clone();
  const auto x2 = f.x + 0.05 * at::randn_like(f.x);
  auto out = f.model.forward_tokenwise(x2, 650.0, f.ctx, 0.25, {}, state);
  const int64_t n = 64, k = 16;  // ceil(0.25 * 64)
  EXPECT_EQ(state.computed_tokens, f.c.layers * n + f.c.layers * k);
  // Block 0: exactly k tokens were recomputed (stale reset to 0), the others kept their outputs.
  const auto& b0 = state.blocks[0];
  auto fresh = b0.stale.eq(0);
  EXPECT_EQ(fresh.sum().item<int64_t>(), k);
  auto kept = fresh.logical_not();
  EXPECT_TRUE(at::equal(b0.out.index({kept}), before.index({kept})));
  EXPECT_FALSE(at::equal(b0.out.index({fresh}), before.index({fresh})));
  EXPECT_EQ(b0.stale.max().item<float>(), 1.f);
  // The result is a perturbation of the dense result at the new input, not something else.
  auto dense = f.model.forward(x2, 650.0, f.ctx);
  EXPECT_TRUE(out.isfinite().all().item<bool>());
  const double rel = ((out - dense).norm() / dense.norm()).item<double>();
  EXPECT_GT(rel, 0.0);
  EXPECT_LT(rel, 0.5);
}

TEST(TokenEngine, SelectionFollowsTheScore) {
  Fixture f;
  TokenEngineState state;
  f.model.forward_tokenwise(f.x, 700.0, f.ctx, 1.0, {}, state);
  // Only staleness counts: make tokens 5 and 9 of every block the stalest; a budget of 2/64 picks them.
  for (auto& b : state.blocks) {
    b.stale.zero_();
    b.stale[5] = 3.0;
    b.stale[9] = 2.0;
  }
  f.model.forward_tokenwise(f.x, 650.0, f.ctx, 2.0 / 64, SelectionParams{0.0, 1.0}, state);
  auto picked = state.blocks[0].stale.eq(0).nonzero().flatten();
  ASSERT_EQ(picked.numel(), 2);
  EXPECT_EQ(picked[0].item<int64_t>(), 5);
  EXPECT_EQ(picked[1].item<int64_t>(), 9);
}

TEST(TokenEngine, TilesSelectWholeRunsOfTokens) {
  Fixture f;
  TokenEngineState state;
  f.model.forward_tokenwise(f.x, 700.0, f.ctx, 1.0, {}, state);
  SelectionParams sel;
  sel.tile = 8;
  f.model.forward_tokenwise(f.x + 0.05 * at::randn_like(f.x), 650.0, f.ctx, 0.3, sel,
                            state);  // 20 tokens -> 3 tiles
  for (const auto& b : state.blocks) {
    auto fresh = b.stale.eq(0).view({8, 8});  // 64 tokens as 8 tiles of 8
    auto per_tile = fresh.sum(1);
    EXPECT_EQ(per_tile.eq(8).sum().item<int64_t>(), 3);
    EXPECT_EQ(per_tile.eq(0).sum().item<int64_t>(), 5);
  }
  // Tiles of 12 do not divide 64 tokens: the last tile holds tokens 60 to 63. Made the stalest, it is
  // chosen with the next best tile (tokens 12 to 23), and nothing past token 63 is selected.
  for (auto& b : state.blocks) {
    b.stale.zero_();
    b.stale.narrow(0, 60, 4).fill_(4.0);
    b.stale.narrow(0, 12, 12).fill_(2.0);
  }
  sel = SelectionParams{0.0, 1.0};
  sel.tile = 12;
  f.model.forward_tokenwise(f.x, 600.0, f.ctx, 20.0 / 64, sel, state);  // 20 tokens -> 2 tiles
  for (const auto& b : state.blocks) {
    const auto fresh = b.stale.eq(0).nonzero().flatten();
    ASSERT_EQ(fresh.numel(), 16);
    EXPECT_TRUE(at::equal(fresh, at::cat({at::arange(12, 24), at::arange(60, 64)})));
  }
}

TEST(TokenEngine, EveryFrameKeepsItsMinimumShare) {
  Fixture f;
  TokenEngineState state;
  f.model.forward_tokenwise(f.x, 700.0, f.ctx, 1.0, {}, state);
  // Make frame 0 the stalest by far: without a floor it would take the whole budget.
  for (auto& b : state.blocks) b.stale.narrow(0, 0, 16).fill_(5.0);
  SelectionParams sel{0.0, 1.0};
  sel.min_frame_share = 0.25;                                      // 4 of each frame's 16 tokens
  f.model.forward_tokenwise(f.x, 650.0, f.ctx, 0.25, sel, state);  // 16 tokens in all
  auto fresh = state.blocks[0].stale.eq(0).view({4, 16}).sum(1);
  for (int64_t fr = 0; fr < 4; ++fr) EXPECT_EQ(fresh[fr].item<int64_t>(), 4) << "frame " << fr;
}

// Segments select the top share of each equal run of tokens (what that many ranks do): the 16 stalest
// tokens all lie in the first half, yet each half of 32 gets its ceil(0.3 * 32) = 10.
TEST(TokenEngine, SegmentsSelectTheirShareOfEachRun) {
  Fixture f;
  TokenEngineState state;
  f.model.forward_tokenwise(f.x, 700.0, f.ctx, 1.0, {}, state);
  for (auto& b : state.blocks) b.stale.narrow(0, 0, 16).fill_(5.0);
  SelectionParams sel{0.0, 1.0};
  sel.segments = 2;
  f.model.forward_tokenwise(f.x, 650.0, f.ctx, 0.3, sel, state);
  EXPECT_EQ(state.computed_tokens, f.c.layers * (64 + 20));
  const auto fresh = state.blocks[0].stale.eq(0).view({2, 32}).sum(1);
  EXPECT_EQ(fresh[0].item<int64_t>(), 10);
  EXPECT_EQ(fresh[1].item<int64_t>(), 10);
  // Segments that do not divide the tokens, or frames a segment splits, are refused by name.
  sel.segments = 3;
  EXPECT_THROW(
      {
        try {
          f.model.forward_tokenwise(f.x, 600.0, f.ctx, 0.3, sel, state);
        } catch (const std::invalid_argument& e) {
          EXPECT_STREQ(e.what(), "selection segments 3 do not divide the 64 tokens");
          throw;
        }
      },
      std::invalid_argument);
  sel.segments = 8;  // 8 tokens a segment, frames of 16
  sel.min_frame_share = 0.25;
  EXPECT_THROW(f.model.forward_tokenwise(f.x, 600.0, f.ctx, 0.3, sel, state), std::invalid_argument);
}

TEST(TokenEngine, ReusedKeysAndValuesMatchRecomputedOnesWhenAllTokensAreSelected) {
  Fixture f;
  const auto x2 = f.x + 0.05 * at::randn_like(f.x);
  SelectionParams reuse;
  reuse.reuse_kv = true;
  TokenEngineState plain_state, reuse_state;
  f.model.forward_tokenwise(f.x, 700.0, f.ctx, 1.0, {}, plain_state);
  f.model.forward_tokenwise(f.x, 700.0, f.ctx, 1.0, reuse, reuse_state);
  EXPECT_EQ(reuse_state.bytes() - plain_state.bytes(),
            f.c.layers * 2 * 64 * f.c.dim * 4);  // k and v per block
  // 0.999 of 64 tokens rounds up to all of them: the sparse path with fresh keys and values everywhere.
  auto plain = f.model.forward_tokenwise(x2, 650.0, f.ctx, 0.999, {}, plain_state);
  auto reused = f.model.forward_tokenwise(x2, 650.0, f.ctx, 0.999, reuse, reuse_state);
  EXPECT_TRUE(at::allclose(plain, reused, 1e-4, 1e-5)) << (plain - reused).abs().max().item<float>();
  // With part of the tokens, stale keys and values make a (slightly) different result.
  auto part_plain = f.model.forward_tokenwise(x2 + 0.05, 600.0, f.ctx, 0.5, {}, plain_state);
  auto part_reused = f.model.forward_tokenwise(x2 + 0.05, 600.0, f.ctx, 0.5, reuse, reuse_state);
  EXPECT_TRUE(part_reused.isfinite().all().item<bool>());
  EXPECT_FALSE(at::allclose(part_plain, part_reused, 1e-4, 1e-5));
}

// On a GPU: budget 1 is the dense bf16 model there too, and a sparse step on the fused kernels
// (gathered queries rotated inside rms_norm_rope) agrees with the same step on ATen operations, for
// single tokens (the fused top-k), tiles and a frame floor (ATen selection, then the fused kernels).
TEST(TokenEngineGpu, DenseEqualityAndFusedSparseStep) {
  if (!compat::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device gpu(at::kCUDA, 0);
  auto c = model_preset("tiny");
  const auto owned = make_denoiser(c, random_weights(c, 12, gpu, at::kBFloat16), at::kBFloat16);
  const Denoiser& model = *owned;
  auto x = at::randn({3, 8, 32, 32});  // 8 x 8 x 8 = 512 tokens
  auto ctx = model.embed_context(model.encode_prompt("a cyan triangle moving up on a navy background"));
  TokenEngineState primed;
  auto dense = model.forward_tokenwise(x, 700.0, ctx, 1.0, {}, primed);
  EXPECT_TRUE(at::equal(dense, model.forward(x, 700.0, ctx)));
  // Distinct staleness and a staleness-only score: both paths pick the same tokens, whatever rounding does.
  for (auto& b : primed.blocks) b.stale = at::randperm(512, at::kFloat).mul_(0.01).to(gpu);
  const auto copy_of = [](const TokenEngineState& s) {  // the caches, deep-copied
    TokenEngineState t = s;
    for (auto& b : t.blocks)
      b.out = b.out.clone(), b.lse = b.lse.clone(), b.sketch = b.sketch.clone(), b.stale = b.stale.clone();
    return t;
  };
  const auto x2 = x + 0.05 * at::randn_like(x);
  SelectionParams by_staleness{0.0, 1.0}, tiles = by_staleness, floor = by_staleness;
  tiles.tile = 4;
  floor.min_frame_share = 0.3;
  for (const auto& [name, sel] : {std::pair{"single tokens", by_staleness}, std::pair{"tiles of 4", tiles},
                                  std::pair{"frame floor 0.3", floor}}) {
    SCOPED_TRACE(name);
    auto state = copy_of(primed), aten_state = copy_of(primed);
    auto fused = model.forward_tokenwise(x2, 650.0, ctx, 0.4, sel, state).cpu();
    set_fused_kernels_disabled(true);
    auto aten = model.forward_tokenwise(x2, 650.0, ctx, 0.4, sel, aten_state).cpu();
    set_fused_kernels_disabled(false);
    EXPECT_TRUE(fused.isfinite().all().item<bool>());
    EXPECT_LT(((fused - aten).norm() / aten.norm()).item<double>(), 2e-2);
    // The same tokens computed: staleness reset on exactly the same ones in every block.
    for (size_t i = 0; i < state.blocks.size(); ++i)
      EXPECT_TRUE(at::equal(state.blocks[i].stale.eq(0), aten_state.blocks[i].stale.eq(0))) << "block " << i;
    EXPECT_EQ(state.computed_tokens, aten_state.computed_tokens);
  }
}

GenerateOptions tiny_run() {
  GenerateOptions o;
  o.weights = "random";
  o.prompt = "a blue square moving up on a black background";
  o.frames = 4;
  o.height = 16;
  o.width = 16;
  o.steps = 6;
  o.seed = 3;
  return o;
}

TEST(TokenEngine, AllDenseScheduleEqualsTheDenseRun) {
  auto o = tiny_run();
  const auto dense = generate(o);
  o.schedule = uniform_schedule("tiny", 6, 1.0, 0);
  const auto r = generate(o);
  EXPECT_TRUE(at::equal(dense.video, r.video));
  EXPECT_DOUBLE_EQ(r.token_share, 1.0);
}

TEST(TokenEngine, MixedScheduleRunsEndToEnd) {
  auto o = tiny_run();
  const auto dense = generate(o);
  TokenBudgetSchedule s;
  s.model = "tiny";
  s.budgets = {1, 1, 0.5, 0, 0.3, 1};
  o.schedule = s;
  const auto a = generate(o), b = generate(o);
  EXPECT_TRUE(at::equal(a.video, b.video));  // deterministic
  EXPECT_EQ(a.skipped_steps, 1);
  EXPECT_EQ(a.model_calls, 10);  // 5 computed steps, guided
  // Token share of a dense run: 0.5 of 64 tokens is 32, 0.3 rounds up to ceil(19.2) = 20.
  EXPECT_NEAR(a.token_share, (1 + 1 + 32.0 / 64 + 0 + 20.0 / 64 + 1) / 6, 1e-12);
  EXPECT_GT(a.cache_bytes, 0);
  EXPECT_FALSE(at::equal(a.video, dense.video));
  EXPECT_LT((a.video - dense.video).abs().mean().item<float>(), 0.25f);
  o.schedule->budgets = {1, 1, 1};
  EXPECT_THROW(generate(o), std::runtime_error);  // wrong step count
}

}  // namespace
}  // namespace astraea
