// The store opened on an arbitrary file (a garbage file, a database of another schema, a newer
// one): it opens or throws StoreError, and an opened store answers its reads.
#include <cstdio>

#include "db/store.h"
#include "fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = astraea::fuzz::as_file(data, size, ".db");
  for (const char* side : {"-journal", "-wal", "-shm"}) std::remove((path + side).c_str());  // the last input's
  try {
    astraea::db::StoreOptions bounded;
    bounded.busy_timeout_ms = 100;
    bounded.query_timeout_ms = 1000;
    bounded.query_max_rows = 10000;
    auto store = astraea::db::Store::open(path, bounded);
    store.latency_rows("tiny", 4, 32, 32, "");
    store.query("SELECT count(*) FROM runs");
    store.find_cell("x");
  } catch (const astraea::db::StoreError&) {
  }
  return 0;
}
