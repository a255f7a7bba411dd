// What `astraea-bench tune` prints of a tuning run.
#pragma once

#include "tuner/tune.h"

namespace astraea::app {

/// Prints OUT of REQUEST on stdout (a noisy measured speed also warns on stderr).
void print_outcome(const tuner::TuneRequest& request, const tuner::TuneOutcome& out);

}  // namespace astraea::app
