// How the ranks of one generation divide the work: CFG parallelism (the two guidance branches on
// two halves of the ranks) times Ulysses sequence parallelism (each half's tokens split over its
// ranks) times ring attention. `--parallel auto | cfg=C,ulysses=U,ring=R`.
#pragma once

#include <memory>
#include <string>

#include "model/collective.h"
#include "parallel/process_group.h"

namespace astraea::parallel {

struct Layout {
  int cfg = 1, ulysses = 1, ring = 1;
  int world() const { return cfg * ulysses * ring; }
  /// "cfg 2 x ulysses 3" (the factors above 1; "one rank" for none).
  std::string text() const;
};

/// TEXT for WORLD ranks of a model with HEADS heads, GUIDED or not (guidance 1 makes one call a
/// step, so there is no CFG to split). "auto" takes CFG 2 when guided and the ranks are even, then
/// Ulysses over the largest share of the rest that divides the heads, and ring over what remains
/// (Wan 1.3B's 12 heads on 8 unguided ranks: ulysses 4 x ring 2). A FieldError naming `parallel`
/// with the numbers for a product that is not WORLD, a CFG degree other than 1 or 2 (or 2
/// unguided), or a Ulysses degree that does not divide the heads.
Layout parse_layout(const std::string& text, int world, int heads, bool guided);

/// This rank's groups under a layout, with S = U x R ranks per guidance branch: the CFG pair
/// (ranks q and S + q: same token shard, other branch), its Ulysses group (U consecutive ranks)
/// and its ring (R ranks U apart), which together split the branch's tokens; null where the
/// degree is 1.
struct Groups {
  std::shared_ptr<const Collective> cfg, ulysses, ring;
};
Groups make_groups(const ProcessGroup& world, const Layout& layout);

}  // namespace astraea::parallel
