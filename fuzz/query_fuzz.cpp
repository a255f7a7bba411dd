// query's guard on arbitrary SQL against a real store: whatever the text, the database file's
// bytes stay the same (no write, no ATTACH that writes, no PRAGMA that writes, no second
// statement run), and anything refused is refused with StoreError.
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "db/store.h"
#include "fuzz/fuzz_file.h"

namespace {

std::string contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A store with one run, opened once; the bytes of its file and its write-ahead log once opened.
struct Fixture {
  std::string path, bytes;
  std::unique_ptr<astraea::db::Store> store;
  Fixture() {
    path = astraea::fuzz::as_file(nullptr, 0, ".query.db");
    std::remove(path.c_str());
    astraea::db::StoreOptions bounded;  // a recursive CTE would otherwise run until the timeout
    bounded.query_timeout_ms = 1000;
    bounded.query_max_rows = 10000;
    store = std::make_unique<astraea::db::Store>(astraea::db::Store::open(path, bounded));
    astraea::db::RunRecord run;
    run.kind = "profile";
    run.config_json = "{\"model\": \"tiny\", \"budget\": 0.5}";
    run.measurements.push_back({"step_ms", "ms", 12.5});
    store->add_run(run);
    bytes = snapshot();
  }
  std::string snapshot() const { return contents(path) + "|" + contents(path + "-wal"); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Fixture fixture;
  const std::string sql(reinterpret_cast<const char*>(data), size);
  try {
    fixture.store->query(sql, {"tiny"});
  } catch (const astraea::db::StoreError&) {
  }
  if (fixture.snapshot() != fixture.bytes) std::abort();  // a query wrote to the store
  return 0;
}
