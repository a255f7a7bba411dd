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
/// Ulysses over the rest where it divides the heads, else ring. A FieldError naming `parallel`
/// with the numbers for a product that is not WORLD, a CFG degree other than 1 or 2 (or 2
/// unguided), a Ulysses degree that does not divide the heads, or Ulysses and ring both above 1
/// (not built yet).
Layout parse_layout(const std::string& text, int world, int heads, bool guided);

/// This rank's groups under a layout, with S = U x R ranks per guidance branch: the CFG pair
/// (ranks s and S + s: same token share, other branch) and its sequence group (ranks c S .. c S +
/// S - 1, splitting the tokens by Ulysses or ring); null where the degree is 1.
struct Groups {
  std::shared_ptr<const Collective> cfg, sequence;
  bool ring = false;  ///< the sequence group attends by ring, not Ulysses
};
Groups make_groups(const ProcessGroup& world, const Layout& layout);

}  // namespace astraea::parallel
