#include "parallel/layout.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "io/field_error.h"

namespace astraea::parallel {
namespace {

int degree(const std::string& item, const std::string& value) {
  char* end = nullptr;
  const long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end || v < 1 || v > 4096) {
    throw FieldError("parallel", "item '" + item + "' is not KEY=N with N a positive integer");
  }
  return static_cast<int>(v);
}

}  // namespace

std::string Layout::text() const {
  std::string t;
  auto add = [&](const char* name, int d) {
    if (d > 1) t += (t.empty() ? "" : " x ") + std::string(name) + " " + std::to_string(d);
  };
  add("cfg", cfg);
  add("ulysses", ulysses);
  add("ring", ring);
  return t.empty() ? "one rank" : t;
}

Layout parse_layout(const std::string& text, int world, int heads, bool guided) {
  Layout l;
  if (text == "auto") {
    l.cfg = guided && world % 2 == 0 ? 2 : 1;
    // Ulysses over the largest share of the rest that divides the heads (its all-to-alls move
    // less than a ring's passes), ring over what remains.
    const int rest = world / l.cfg;
    for (int u = rest; u >= 1; --u) {
      if (rest % u == 0 && heads % u == 0) {
        l.ulysses = u;
        l.ring = rest / u;
        break;
      }
    }
  } else {
    size_t begin = 0;
    while (begin <= text.size()) {
      const size_t end = std::min(text.find(',', begin), text.size());
      const std::string item = text.substr(begin, end - begin);
      const auto eq = item.find('=');
      const std::string key = item.substr(0, eq);
      if (eq == std::string::npos || (key != "cfg" && key != "ulysses" && key != "ring")) {
        throw FieldError("parallel", "item '" + item + "' is not cfg=C, ulysses=U or ring=R (or auto)");
      }
      (key == "cfg" ? l.cfg : key == "ulysses" ? l.ulysses : l.ring) = degree(item, item.substr(eq + 1));
      begin = end + 1;
    }
  }
  const std::string given = "'" + text + "' (" + l.text() + ")";
  if (l.world() != world) {
    throw FieldError("parallel", given + " uses " + std::to_string(l.world()) + " ranks, but " +
                                     std::to_string(world) + " were launched");
  }
  if (l.cfg > 2 || (l.cfg == 2 && !guided)) {
    throw FieldError("parallel",
                     given + ": CFG parallelism splits the two guidance branches, so cfg is 1 or 2, and 1 " +
                         "without guidance (--guidance 1)");
  }
  if (heads % l.ulysses != 0) {
    throw FieldError("parallel", given + ": Ulysses over " + std::to_string(l.ulysses) +
                                     " ranks needs heads divisible by it; the model has " +
                                     std::to_string(heads) + " (ring=" + std::to_string(l.ulysses) +
                                     " takes any head count)");
  }
  return l;
}

Groups make_groups(const ProcessGroup& world, const Layout& layout) {
  Groups g;
  // S = U x R ranks per guidance branch; sequence rank q holds token shard q, at ring position
  // q / U and Ulysses position q % U (model/collective.h: SequenceSplit).
  const int r = world.rank(), s = layout.ulysses * layout.ring, c = r / s, q = r % s;
  const int ring_pos = q / layout.ulysses, u_pos = q % layout.ulysses;
  // Every rank makes the groups it belongs to, in the same order: its CFG pair, its Ulysses group,
  // its ring.
  auto make = [&](int count, auto member) {
    std::vector<int> members;
    for (int k = 0; k < count; ++k) members.push_back(member(k));
    return std::shared_ptr<const Collective>(world.subgroup(members));
  };
  if (layout.cfg > 1) g.cfg = make(layout.cfg, [&](int k) { return k * s + q; });
  if (layout.ulysses > 1)
    g.ulysses = make(layout.ulysses, [&](int k) { return c * s + ring_pos * layout.ulysses + k; });
  if (layout.ring > 1) g.ring = make(layout.ring, [&](int k) { return c * s + k * layout.ulysses + u_pos; });
  return g;
}

}  // namespace astraea::parallel
