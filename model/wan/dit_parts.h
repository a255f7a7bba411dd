// The parts of WanDiT that its source files share (not a public header): one block's weights under
// their Wan checkpoint keys, and the embedded inputs of the blocks. dit.cpp holds the Wan math and
// the key mapping, dit_tokenwise.cpp the token-wise forward (selection policy and the fused
// kernels' marshalling), dit_parallel.cpp the forwards with the tokens split over ranks,
// dit_text_encoder.cpp the tiny preset's own text encoder.
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

#include "model/wan/dit.h"

namespace astraea {

struct WanDiT::Block {
  at::Tensor qkv_w, qkv_b, o_w, o_b, norm_q, norm_k;                  // self-attention, q|k|v fused
  at::Tensor norm3_w, norm3_b;                                        // cross-attention input norm
  at::Tensor cq_w, cq_b, ckv_w, ckv_b, co_w, co_b, cnorm_q, cnorm_k;  // cross-attention, k|v fused
  at::Tensor ffn1_w, ffn1_b, ffn2_w, ffn2_b;
  at::Tensor modulation;  // [6, D] float32

  /// Every tensor, in parameters() order, with its key under "blocks.N." in Wan's checkpoints.
  /// The fused q|k|v and k|v and the reshaped modulation have no key here: the constructor and
  /// state_dict() join and split them.
  static const std::vector<std::pair<const char*, at::Tensor Block::*>>& fields() {
    static const std::vector<std::pair<const char*, at::Tensor Block::*>> all = {
        {nullptr, &Block::qkv_w},
        {nullptr, &Block::qkv_b},
        {"self_attn.o.weight", &Block::o_w},
        {"self_attn.o.bias", &Block::o_b},
        {"self_attn.norm_q.weight", &Block::norm_q},
        {"self_attn.norm_k.weight", &Block::norm_k},
        {"norm3.weight", &Block::norm3_w},
        {"norm3.bias", &Block::norm3_b},
        {"cross_attn.q.weight", &Block::cq_w},
        {"cross_attn.q.bias", &Block::cq_b},
        {nullptr, &Block::ckv_w},
        {nullptr, &Block::ckv_b},
        {"cross_attn.o.weight", &Block::co_w},
        {"cross_attn.o.bias", &Block::co_b},
        {"cross_attn.norm_q.weight", &Block::cnorm_q},
        {"cross_attn.norm_k.weight", &Block::cnorm_k},
        {"ffn.0.weight", &Block::ffn1_w},
        {"ffn.0.bias", &Block::ffn1_b},
        {"ffn.2.weight", &Block::ffn2_w},
        {"ffn.2.bias", &Block::ffn2_b},
        {nullptr, &Block::modulation}};
    return all;
  }
};

// The inputs of the blocks: patch tokens in the float32 residual stream, the timestep vectors,
// and the token grid.
struct WanDiT::Embedded {
  at::Tensor x;   // [B, N, D] float32
  at::Tensor e;   // [B, D] float32, for the head
  at::Tensor e0;  // [B, 6, D] float32, modulation of every block
  int64_t gf = 0, gh = 0, gw = 0;
};

// Self-attention of this rank's queries q [B, nq, H, hd] over the keys and values k, v [B, nk, H,
// hd] of its tokens and, through SPLIT (null: none), of every other rank's: Ulysses exchanges
// heads for tokens around it, ring passes keys and values round and merges the partial outputs
// by their log-sum-exps, and both together run the ring between Ulysses groups. out [B, nq, H *
// hd] in q's dtype; lse [B, H, nq] float32 when WANT_LSE (the ring computes it anyway). OP, open
// at the attention range, moves to the comm range around each collective and back.
AttentionResult sequence_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   bool want_lse, const SequenceSplit* split, OpSequence& op);

}  // namespace astraea
