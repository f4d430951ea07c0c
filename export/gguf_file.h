// GGUF version 3: the model file llama.cpp, ollama and LM Studio load. Written by hand; the
// format is small:
//
//   "GGUF"  version u32 (3)  tensor count u64  metadata count u64
//   metadata   key (string) · value type u32 · value           strings: length u64 + UTF-8 bytes
//   tensors    name (string) · dims u32 · ne[dims] u64 · ggml type u32 · offset u64
//   padding to 32 bytes, then each tensor's bytes at its offset (every offset a multiple of 32)
//
// ne[0] is the length of a row, the fastest-moving index: a LibTorch [rows, cols] row-major
// matrix is ggml's {cols, rows} with the same bytes. Everything is little-endian.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dracarys {

// The element types written here (ggml's numbers).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ8_0 = 8,  // blocks of 32: one fp16 scale d, then 32 int8 q; x = d * q
};

constexpr int64_t kQ8BlockSize = 32;
constexpr uint64_t kGgufAlignment = 32;

// IEEE half-precision bits of `x`, rounded to nearest even (as LibTorch's and ggml's converters).
uint16_t fp16_bits(float x);
float fp16_value(uint16_t bits);

// One row of floats as Q8_0 blocks (ggml's reference quantiser: d = max|x| / 127, q = round(x/d)).
// n must be a multiple of kQ8BlockSize; appends n / 32 * 34 bytes.
void append_q8_0(const float* x, int64_t n, std::string& out);

class GgufWriter {
 public:
  void add_u32(const std::string& key, uint32_t value);
  void add_f32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string(const std::string& key, const std::string& value);
  void add_strings(const std::string& key, const std::vector<std::string>& values);
  void add_f32s(const std::string& key, const std::vector<float>& values);
  void add_i32s(const std::string& key, const std::vector<int32_t>& values);

  // A tensor of float32 `data` in ggml's order of dimensions `ne` (ne[0]: row length), stored
  // as `type`. Q8_0 needs ne[0] to be a multiple of 32 (throws std::invalid_argument).
  void add_tensor(const std::string& name, const std::vector<int64_t>& ne, GgmlType type, const float* data);

  // The whole file.
  std::string bytes() const;

 private:
  void begin(const std::string& key, uint32_t value_type);  // a metadata record's key and type
  template <class T>
  void add_array(const std::string& key, uint32_t element_type, const std::vector<T>& values);

  std::string metadata_;  // the key/value records, back to back
  uint64_t metadata_count_ = 0;
  std::string tensor_infos_;
  uint64_t tensor_count_ = 0;
  std::string data_;  // every tensor's bytes, each padded to the alignment
};

}  // namespace dracarys
