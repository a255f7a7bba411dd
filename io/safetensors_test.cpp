#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace astraea {
namespace {

namespace fs = std::filesystem;

constexpr DType kAllDTypes[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                                DType::I32, DType::I16, DType::I8,  DType::U8,   DType::BOOL};

// The 8-byte little-endian length prefix, spelled out byte by byte.
std::string le64(uint64_t value) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A whole file: length prefix, HEADER, DATA.
std::string file_of(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "safetensors_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_file(const std::string& name, const std::string& bytes) const {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  // Expects open(PATH) to throw a SafetensorsError naming PATH and holding each of NEEDLES.
  static void expect_open_error(const std::string& path, const std::vector<std::string>& needles) {
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << path << " opened without error";
    } catch (const SafetensorsError& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find(path), std::string::npos) << message;
      for (const std::string& needle : needles) {
        EXPECT_NE(message.find(needle), std::string::npos) << "'" << message << "' lacks '" << needle << "'";
      }
    }
  }

  fs::path dir_;
};

TEST(DType, NamesAndSizesMatchTheFormat) {
  const std::pair<std::string_view, size_t> expected[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},
                                                          {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
                                                          {"U8", 1},  {"BOOL", 1}};
  for (size_t i = 0; i < std::size(kAllDTypes); ++i) {
    EXPECT_EQ(dtype_name(kAllDTypes[i]), expected[i].first);
    EXPECT_EQ(dtype_size(kAllDTypes[i]), expected[i].second);
    EXPECT_EQ(dtype_from_name(expected[i].first), kAllDTypes[i]);
  }
  EXPECT_EQ(dtype_from_name("F8_E4M3"), std::nullopt);
}

// Bytes written by hand, so the reader is checked against the format itself, not our writer.
TEST_F(SafetensorsTest, ReadsHandWrittenFile) {
  std::string header = R"({"__metadata__":{"format":"pt"},)"
                       R"("b":{"dtype":"I16","shape":[1,2],"data_offsets":[8,12]},)"
                       R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("c":{"dtype":"BF16","shape":[],"data_offsets":[12,14]}})";
  // Trailing spaces are legal padding.
  header += "     ";
  const std::string data = std::string("\x00\x00\x80\x3f", 4) +  // F32 1.0
                           std::string("\x00\x00\x20\xc0", 4) +  // F32 -2.5
                           std::string("\x01\x00", 2) +          // I16 1
                           std::string("\xfe\xff", 2) +          // I16 -2
                           std::string("\xc0\x3f", 2);           // BF16 1.5
  const std::string path = write_file("hand.safetensors", file_of(header, data));

  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(file.path(), path);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "a");  // data-offset order, not header order
  EXPECT_EQ(file.tensors()[1].name, "b");
  EXPECT_EQ(file.tensors()[2].name, "c");

  const TensorView& a = file.at("a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2}));
  ASSERT_EQ(a.nbytes, 8u);
  float a_values[2];
  std::memcpy(a_values, a.data, sizeof a_values);
  EXPECT_EQ(a_values[0], 1.0f);
  EXPECT_EQ(a_values[1], -2.5f);

  const TensorView& b = file.at("b");
  EXPECT_EQ(b.dtype, DType::I16);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(b.numel(), 2);
  int16_t b_values[2];
  ASSERT_EQ(b.nbytes, sizeof b_values);
  std::memcpy(b_values, b.data, sizeof b_values);
  EXPECT_EQ(b_values[0], 1);
  EXPECT_EQ(b_values[1], -2);

  const TensorView& c = file.at("c");
  EXPECT_EQ(c.dtype, DType::BF16);
  EXPECT_TRUE(c.shape.empty());
  EXPECT_EQ(c.numel(), 1);
  uint16_t c_bits;
  ASSERT_EQ(c.nbytes, sizeof c_bits);
  std::memcpy(&c_bits, c.data, sizeof c_bits);
  uint32_t c_f32_bits = uint32_t{c_bits} << 16;  // BF16 is the top half of an F32
  float c_value;
  std::memcpy(&c_value, &c_f32_bits, sizeof c_value);
  EXPECT_EQ(c_value, 1.5f);

  EXPECT_EQ(file.find("missing"), nullptr);
  try {
    file.at("missing");
    ADD_FAILURE() << "at() found a missing tensor";
  } catch (const SafetensorsError& error) {
    EXPECT_STREQ(error.what(), (path + ": no tensor 'missing'").c_str());
  }
}

TEST_F(SafetensorsTest, RoundTripsEveryDTypeScalarAndEmptyTensor) {
  struct Case {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  std::vector<Case> cases;
  for (DType dtype : kAllDTypes) cases.push_back({"t_" + std::string(dtype_name(dtype)), dtype, {2, 3}});
  cases.push_back({"scalar", DType::F64, {}});
  cases.push_back({"empty", DType::I32, {0}});
  cases.push_back({"empty_middle", DType::F16, {3, 0, 2}});

  // Distinct, non-zero bytes per tensor, so a swapped or shifted tensor cannot compare equal.
  std::vector<std::vector<unsigned char>> payloads;
  std::vector<TensorToWrite> to_write;
  for (size_t i = 0; i < cases.size(); ++i) {
    int64_t numel = 1;
    for (int64_t dim : cases[i].shape) numel *= dim;
    std::vector<unsigned char> bytes(static_cast<size_t>(numel) * dtype_size(cases[i].dtype));
    for (size_t k = 0; k < bytes.size(); ++k)
      bytes[k] = static_cast<unsigned char>(1 + (i * 37 + k * 11) % 251);
    payloads.push_back(std::move(bytes));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    to_write.push_back(
        {cases[i].name, cases[i].dtype, cases[i].shape, payloads[i].empty() ? nullptr : payloads[i].data()});
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\""}};
  const std::string path = (dir_ / "round.safetensors").string();
  write_safetensors(path, to_write, metadata);
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"round.safetensors"});

  const std::string bytes = read_bytes(path);
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = header_bytes << 8 | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + header_bytes) % 8, 0u) << "data block not 8-byte aligned";

  SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(file.metadata(), metadata);
  ASSERT_EQ(file.tensors().size(), cases.size());
  size_t data_bytes = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    const TensorView* tensor = file.find(cases[i].name);
    ASSERT_NE(tensor, nullptr);
    EXPECT_EQ(tensor->dtype, cases[i].dtype);
    EXPECT_EQ(tensor->shape, cases[i].shape);
    ASSERT_EQ(tensor->nbytes, payloads[i].size());
    if (!payloads[i].empty()) {  // memcmp must not see the null data of an empty tensor
      EXPECT_EQ(std::memcmp(tensor->data, payloads[i].data(), payloads[i].size()), 0);
    }
    data_bytes += payloads[i].size();
  }
  EXPECT_EQ(file.at("scalar").numel(), 1);
  EXPECT_EQ(file.at("empty").numel(), 0);
  EXPECT_EQ(bytes.size(), 8 + header_bytes + data_bytes) << "tensors are not packed back to back";

  // Moving the file keeps the views valid: they point into the mapping, not into the object.
  SafetensorsFile moved = std::move(file);
  EXPECT_EQ(std::memcmp(moved.at("t_F32").data, payloads[1].data(), payloads[1].size()), 0);
}

// Names of 1 to 8 characters move the header's unpadded end through every remainder mod 8.
TEST_F(SafetensorsTest, DataBlockStartsEightByteAligned) {
  const double value = 0.25;
  for (size_t name_length = 1; name_length <= 8; ++name_length) {
    const std::string path = (dir_ / "aligned.safetensors").string();
    write_safetensors(path, {{std::string(name_length, 'n'), DType::F64, {}, &value}});
    const std::string bytes = read_bytes(path);
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; --i) header_bytes = header_bytes << 8 | static_cast<unsigned char>(bytes[i]);
    EXPECT_EQ(header_bytes % 8, 0u) << "name length " << name_length;
    EXPECT_EQ(bytes.size(), 8 + header_bytes + sizeof value);
    const SafetensorsFile file = SafetensorsFile::open(path);
    double read_back = 0;
    std::memcpy(&read_back, file.tensors().at(0).data, sizeof read_back);
    EXPECT_EQ(read_back, value);
  }
}

TEST_F(SafetensorsTest, EmptyTensorsInsideOthersDoNotOverlap) {
  const std::string header =
      R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}})";
  const SafetensorsFile file =
      SafetensorsFile::open(write_file("empty.safetensors", file_of(header, "abcd")));
  EXPECT_EQ(file.tensors().size(), 2u);
}

TEST_F(SafetensorsTest, MissingFileNamesIt) {
  expect_open_error((dir_ / "absent.safetensors").string(), {"cannot open", "No such file"});
}

TEST_F(SafetensorsTest, DirectoryIsRejected) { expect_open_error(dir_.string(), {"not a regular file"}); }

// One corruption per case: the file's bytes and what the message must say besides the path.
struct CorruptCase {
  const char* name;
  std::string bytes;
  std::vector<std::string> needles;
};

std::string one_tensor(const std::string& entry, const std::string& data = std::string(8, 'x')) {
  return file_of(R"({"w":)" + entry + "}", data);
}

const std::string kGoodF32x2 = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

std::vector<CorruptCase> corrupt_cases() {
  return {
      {"ShorterThanLengthPrefix",
       std::string("\x10\x00\x00", 3),
       {"3 bytes, shorter than the 8-byte header length"}},
      {"HeaderLengthZero", le64(0) + "{}", {"header length is 0"}},
      {"HeaderLengthOver100MiB", le64(uint64_t{101} << 20) + "{}", {"exceeds the 100 MiB limit"}},
      {"HeaderLengthHuge", le64(~uint64_t{0}) + "{}", {"exceeds the 100 MiB limit"}},
      {"HeaderPastEndOfFile", le64(64) + "{}", {"header length 64 runs past the end", "truncated?"}},
      {"HeaderNotJson", file_of(R"({"w": {"dtype")"), {"header is not valid JSON"}},
      {"HeaderNotUtf8", file_of("{\"w\xff\": 1}"), {"header is not valid JSON"}},
      // Found by fuzz_safetensors: a number beyond a double escaped as nlohmann's out_of_range.
      {"HeaderNumberOverflows", file_of(R"({"__metadata__": {"g": 24.000e400}})"),
       {"header is not valid JSON", "number overflow"}},
      {"HeaderNotObject", file_of("[1, 2]"), {"header is not a JSON object"}},
      {"EntryNotObject", one_tensor("5"), {"tensor 'w'", "entry is not a JSON object"}},
      {"MissingDtype", one_tensor(R"({"shape":[2],"data_offsets":[0,8]})"), {"tensor 'w'", "missing dtype"}},
      {"DtypeNotString",
       one_tensor(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"),
       {"tensor 'w'", "dtype is not a string"}},
      {"UnknownDtype",
       one_tensor(R"({"dtype":"F7","shape":[2],"data_offsets":[0,8]})"),
       {"tensor 'w'", "unknown dtype \"F7\""}},
      {"MissingShape",
       one_tensor(R"({"dtype":"F32","data_offsets":[0,8]})"),
       {"tensor 'w'", "missing shape"}},
      {"ShapeNotArray",
       one_tensor(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"),
       {"tensor 'w'", "shape is not an array"}},
      {"ShapeNegative",
       one_tensor(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"),
       {"tensor 'w'", "holds -2, not a non-negative integer"}},
      {"ShapeFraction",
       one_tensor(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"),
       {"tensor 'w'", "not a non-negative integer"}},
      {"ShapeNotNumber",
       one_tensor(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"),
       {"tensor 'w'", "not a non-negative integer"}},
      {"ShapeBeyondInt64",
       one_tensor(R"({"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]})"),
       {"tensor 'w'", "not a non-negative integer"}},
      {"NumelOverflow",
       one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,8]})"),
       {"tensor 'w'", "overflow"}},
      {"NbytesOverflow",
       one_tensor(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]})"),
       {"tensor 'w'", "overflow"}},
      {"MissingDataOffsets",
       one_tensor(R"({"dtype":"F32","shape":[2]})"),
       {"tensor 'w'", "missing data_offsets"}},
      {"DataOffsetsNotPair",
       one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"),
       {"tensor 'w'", "data_offsets [0,8,8] is not [begin, end]"}},
      {"DataOffsetsNotArray",
       one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":8})"),
       {"tensor 'w'", "is not [begin, end]"}},
      {"DataOffsetsNegative",
       one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"),
       {"tensor 'w'", "is not [begin, end]"}},
      {"DataOffsetsBeginAfterEnd",
       one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"),
       {"tensor 'w'", "begin after end"}},
      {"EndPastDataBlock",
       one_tensor(kGoodF32x2, "1234567"),
       {"tensor 'w'", "ends past the 7-byte data block (file truncated?)"}},
      {"SizeMismatch",
       one_tensor(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"),
       {"tensor 'w'", "holds 8 bytes but F32 [3] needs 12"}},
      {"Overlap",
       file_of(
           R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           std::string(12, 'x')),
       {"tensors 'w' and 'v' overlap"}},
      {"MetadataNotObject", file_of(R"({"__metadata__":"pt"})"), {"__metadata__ is not a JSON object"}},
      {"MetadataValueNotString",
       file_of(R"({"__metadata__":{"format":"pt","steps":50}})"),
       {"__metadata__: value of 'steps' is not a string"}},
      {"DuplicateTensor",
       file_of(R"({"w":)" + kGoodF32x2 + R"(,"w":)" + kGoodF32x2 + "}", std::string(8, 'x')),
       {"duplicate tensor 'w'"}},
      {"DuplicateField",
       one_tensor(R"({"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]})"),
       {"tensor 'w'", "duplicate key 'dtype'"}},
      {"DuplicateMetadataKey",
       file_of(R"({"__metadata__":{"a":"1","a":"2"}})"),
       {"__metadata__: duplicate key 'a'"}},
  };
}

class CorruptFileTest : public SafetensorsTest, public ::testing::WithParamInterface<CorruptCase> {};

TEST_P(CorruptFileTest, ThrowsNamingFileAndField) {
  expect_open_error(write_file(std::string(GetParam().name) + ".safetensors", GetParam().bytes),
                    GetParam().needles);
}

INSTANTIATE_TEST_SUITE_P(Safetensors, CorruptFileTest, ::testing::ValuesIn(corrupt_cases()),
                         [](const ::testing::TestParamInfo<CorruptCase>& param_info) {
                           return param_info.param.name;
                         });

TEST_F(SafetensorsTest, EveryTruncationThrows) {
  const float weights[6] = {1, 2, 3, 4, 5, 6};
  const int64_t step = 7;
  const std::string path = (dir_ / "full.safetensors").string();
  write_safetensors(path, {{"w", DType::F32, {2, 3}, weights}, {"step", DType::I64, {}, &step}},
                    {{"k", "v"}});
  const std::string bytes = read_bytes(path);
  for (size_t length = 0; length < bytes.size(); ++length) {
    const std::string cut = write_file("cut.safetensors", bytes.substr(0, length));
    EXPECT_THROW(SafetensorsFile::open(cut), SafetensorsError)
        << "cut at " << length << " of " << bytes.size();
  }
}

TEST_F(SafetensorsTest, WriteToMissingFolderLeavesNothing) {
  const float value = 1;
  const std::string path = (dir_ / "no_such_folder" / "w.safetensors").string();
  try {
    write_safetensors(path, {{"w", DType::F32, {}, &value}});
    ADD_FAILURE() << "wrote into a missing folder";
  } catch (const SafetensorsError& error) {
    EXPECT_NE(std::string(error.what()).find(path + ": cannot create"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(list_dir(dir_).empty());
}

TEST_F(SafetensorsTest, RepeatedNameIsRejectedBeforeWriting) {
  const float value = 1;
  const std::string path = (dir_ / "twice.safetensors").string();
  try {
    write_safetensors(path, {{"w", DType::F32, {}, &value}, {"w", DType::F32, {}, &value}});
    ADD_FAILURE() << "wrote two tensors of one name";
  } catch (const SafetensorsError& error) {
    EXPECT_NE(std::string(error.what()).find(path + ": tensor 'w': the name appears twice"),
              std::string::npos)
        << error.what();
  }
  EXPECT_TRUE(list_dir(dir_).empty());
}

// The temporary file is complete here; only the final rename fails (PATH is a folder).
TEST_F(SafetensorsTest, FailedRenameLeavesNoTemporary) {
  const float value = 1;
  const fs::path path = dir_ / "target.safetensors";
  fs::create_directories(path / "occupied");
  EXPECT_THROW(write_safetensors(path.string(), {{"w", DType::F32, {}, &value}}), SafetensorsError);
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"target.safetensors"});
}

// A file size limit makes write() fail with EFBIG halfway through the data.
TEST_F(SafetensorsTest, FailedWriteLeavesNoFile) {
  const std::vector<float> big(64 * 1024, 1.0f);
  const std::string path = (dir_ / "big.safetensors").string();
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto saved_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  std::string message;
  try {
    write_safetensors(path, {{"big", DType::F32, {static_cast<int64_t>(big.size())}, big.data()}});
  } catch (const SafetensorsError& error) {
    message = error.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, saved_handler);
  EXPECT_NE(message.find(path + ": writing"), std::string::npos) << "message: '" << message << "'";
  EXPECT_TRUE(list_dir(dir_).empty());
}

}  // namespace
}  // namespace astraea
