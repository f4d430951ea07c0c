#include "checkpoint/tensor_file.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

#include "checkpoint/json_input.h"
#include "data/errors.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the tensor files are little-endian, as this machine");

namespace dracarys {

namespace {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kI64:
      return "I64";
    case DType::kBool:
      return "BOOL";
  }
  return "?";
}

// The number of elements of `shape`, refusing negative sizes and products past `limit`.
bool element_count(const std::vector<int64_t>& shape, uint64_t limit, uint64_t& count) {
  count = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d != 0 && count > limit / static_cast<uint64_t>(d)) return false;
    count *= static_cast<uint64_t>(d);
  }
  return true;
}

// One header entry, checked against the data's size.
TensorEntry read_entry(const std::string& name, const nlohmann::json& j, size_t data_start, size_t data_size,
                       const std::string& what) {
  auto bad = [&](const std::string& why) {
    return std::invalid_argument(what + ": tensor '" + visible_nul(name) + "' " + why);
  };
  if (!j.is_object() || !j.contains("dtype") || !j.contains("shape") || !j.contains("data_offsets"))
    throw bad("lacks its dtype, shape or data_offsets");
  const auto& dtype = j["dtype"];
  TensorEntry e;
  if (dtype == "F32")
    e.dtype = DType::kF32;
  else if (dtype == "I64")
    e.dtype = DType::kI64;
  else if (dtype == "BOOL")
    e.dtype = DType::kBool;
  else
    throw bad("has a dtype other than F32, I64 or BOOL");
  const auto& shape = j["shape"];
  if (!shape.is_array() || shape.size() > kMaxTensorDims) throw bad("has a malformed shape");
  for (const auto& d : shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
      throw bad("has a malformed shape");
    e.shape.push_back(d.get<int64_t>());
  }
  const auto& offsets = j["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    throw bad("has malformed data_offsets");
  const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
  if (begin > end || end > data_size) throw bad("lies outside the data");
  uint64_t count = 0;
  if (!element_count(e.shape, data_size / dtype_bytes(e.dtype) + 1, count) ||
      count * dtype_bytes(e.dtype) != end - begin)
    throw bad("has " + std::to_string(end - begin) + " bytes, not what its dtype and shape need");
  e.offset = data_start + static_cast<size_t>(begin);
  e.bytes = static_cast<size_t>(end - begin);
  return e;
}

}  // namespace

size_t dtype_bytes(DType t) { return t == DType::kF32 ? 4 : t == DType::kI64 ? 8 : 1; }

std::string encode_tensor_file(const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned, as safetensors pads it
  std::string out(8, '\0');
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, sizeof n);
  out += text;
  out.reserve(out.size() + offset);
  for (const auto& t : tensors) out.append(static_cast<const char*>(t.data), t.bytes);
  return out;
}

std::map<std::string, TensorEntry> parse_tensor_file(std::string_view bytes, const std::string& what) {
  if (bytes.size() < 8) throw std::invalid_argument("the " + what + " section is truncated (no header)");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), sizeof n);
  if (n > kMaxTensorHeaderBytes || n > bytes.size() - 8)
    throw std::invalid_argument("the " + what + " section has a header of " + std::to_string(n) +
                                " bytes, past the file or the limit");
  const nlohmann::json header = parse_untrusted_json(std::string(bytes.substr(8, static_cast<size_t>(n))), what);
  if (!header.is_object())
    throw std::invalid_argument("the " + what + " section has a header that is not a JSON object");
  if (header.size() > kMaxTensors + 1) throw std::invalid_argument("the " + what + " section lists too many tensors");
  const size_t data_start = 8 + static_cast<size_t>(n), data_size = bytes.size() - data_start;
  std::map<std::string, TensorEntry> entries;
  for (const auto& [name, j] : header.items())
    if (name != "__metadata__") entries.emplace(name, read_entry(name, j, data_start, data_size, what));
  // The tensors tile the data exactly: no gap a reader would skip, no byte shared by two.
  std::vector<std::pair<size_t, size_t>> spans;
  for (const auto& [name, e] : entries) spans.emplace_back(e.offset, e.bytes);
  std::sort(spans.begin(), spans.end());
  size_t at = data_start;
  for (const auto& [offset, size] : spans) {
    if (offset != at) throw std::invalid_argument("the " + what + " section has tensors that overlap or leave gaps");
    at += size;
  }
  if (at != bytes.size()) throw std::invalid_argument("the " + what + " section has bytes that belong to no tensor");
  return entries;
}

}  // namespace dracarys
