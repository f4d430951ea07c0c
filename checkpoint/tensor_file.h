// Named tensors as bytes, in the safetensors layout, so that other tools can read our weights:
//
//   u64 little-endian N | N bytes of JSON header | data
//   header: {"NAME": {"dtype": "F32", "shape": [4, 64], "data_offsets": [BEGIN, END]}, ...,
//            "__metadata__": {"KEY": "VALUE", ...}}     (offsets count from the data's start)
//
// The reader trusts nothing: the header's size, depth and every entry are checked, each tensor's
// bytes must be exactly its dtype's size times its shape's product, and the tensors must tile the
// data without gaps or overlaps, before a caller copies a byte. No LibTorch here, so the reader
// is fuzzed on its own (tests/fuzz/fuzz_tensor_file.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace dracarys {

enum class DType { kF32, kI64, kBool };

size_t dtype_bytes(DType t);

// One tensor's place in the bytes.
struct TensorEntry {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  size_t offset = 0;  // from the start of the whole byte string
  size_t bytes = 0;
};

// A tensor to write: its bytes are copied from `data`.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
};

constexpr size_t kMaxTensorHeaderBytes = 16u << 20;
constexpr size_t kMaxTensors = 100000;
constexpr size_t kMaxTensorDims = 8;

std::string encode_tensor_file(const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// The tensors in `bytes`, by name. Throws std::invalid_argument with a one-line reason that
// names `what` ("the checkpoint's weights") when anything is out of place.
std::map<std::string, TensorEntry> parse_tensor_file(std::string_view bytes, const std::string& what);

}  // namespace dracarys
