// SentencePiece behind a C interface, built as its own shared library and opened with
// RTLD_LOCAL | RTLD_DEEPBIND by umt5_tokenizer.cpp. Debian's libsentencepiece carries its own copy
// of protobuf-lite and exports it; linked beside LibTorch (which loads libprotobuf), the two
// copies' symbols interpose and the program crashes before main. Opened this way, SentencePiece
// binds to its own copy and nothing else sees it.
#include <sentencepiece_processor.h>

#include <cstring>
#include <string>
#include <vector>

extern "C" {

// A processor for the model at PATH, or null with the reason in ERROR (ERROR_SIZE bytes).
void* astraea_spm_load(const char* path, char* error, size_t error_size) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    std::snprintf(error, error_size, "%s", status.ToString().c_str());
    delete sp;
    return nullptr;
  }
  return sp;
}

int astraea_spm_eos_id(void* sp) { return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->eos_id(); }

// Encodes TEXT into at most CAPACITY ids; returns the number of ids (which may exceed CAPACITY:
// call again with room), or -1 with the reason in ERROR.
long astraea_spm_encode(void* sp, const char* text, int* ids, long capacity, char* error, size_t error_size) {
  std::vector<int> pieces;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(sp)->Encode(text, &pieces);
  if (!status.ok()) {
    std::snprintf(error, error_size, "%s", status.ToString().c_str());
    return -1;
  }
  const long n = static_cast<long>(pieces.size());
  if (n <= capacity && n > 0) std::memcpy(ids, pieces.data(), sizeof(int) * static_cast<size_t>(n));
  return n;
}

void astraea_spm_free(void* sp) { delete static_cast<sentencepiece::SentencePieceProcessor*>(sp); }
}
