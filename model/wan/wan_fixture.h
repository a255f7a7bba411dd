// The parity fixtures of tests/fixtures/wan (scripts/wan_fixtures.py), for the tests that compare
// with Wan 2.1's own code.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "io/safetensors.h"

namespace astraea {

/// The fixtures' folder (ASTRAEA_WAN_FIXTURES, defined by the test's CMake target).
inline const std::string kWanFixtures = ASTRAEA_WAN_FIXTURES;

/// Fixture tensor NAME of F (the script writes every one as float32), copied out of the mapping.
inline at::Tensor wan_fixture(const SafetensorsFile& f, const std::string& name) {
  const auto& t = f.at(name);
  return at::from_blob(const_cast<std::byte*>(t.data), t.shape, at::kFloat).clone();
}

}  // namespace astraea
