#include "export/gguf_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <type_traits>

namespace dracarys {

namespace {

// GGUF's value types.
enum GgufValue : uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9 };

constexpr char kMagic[] = "GGUF";
constexpr uint32_t kVersion = 3;

template <class T>
void put(std::string& out, T value) {  // little-endian on every machine LibTorch runs on
  char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  out.append(raw, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void pad_to_alignment(std::string& out) {
  out.append((kGgufAlignment - out.size() % kGgufAlignment) % kGgufAlignment, '\0');
}

}  // namespace

uint16_t fp16_bits(float x) {
  uint32_t f;
  std::memcpy(&f, &x, sizeof f);
  const uint32_t sign = (f >> 16) & 0x8000;
  const int exponent = static_cast<int>((f >> 23) & 0xff);
  uint32_t mantissa = f & 0x7fffff;
  if (exponent == 0xff) return static_cast<uint16_t>(sign | 0x7c00 | (mantissa ? 0x200 : 0));  // inf, NaN
  const int e = exponent - 127 + 15;                         // the half's biased exponent
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00);  // too large: infinity
  // Keep the top bits of the mantissa (with its implicit 1 for a subnormal half) and round the
  // dropped ones to nearest, ties to even. A carry may run into the exponent, as it should.
  uint32_t half;
  int dropped;
  if (e <= 0) {
    if (e < -10) return static_cast<uint16_t>(sign);  // below half the smallest subnormal
    mantissa |= 0x800000;
    dropped = 14 - e;
    half = mantissa >> dropped;
  } else {
    dropped = 13;
    half = (static_cast<uint32_t>(e) << 10) | (mantissa >> dropped);
  }
  const uint32_t rest = mantissa & ((1u << dropped) - 1), midpoint = 1u << (dropped - 1);
  if (rest > midpoint || (rest == midpoint && (half & 1))) ++half;
  return static_cast<uint16_t>(sign | half);
}

float fp16_value(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  const int exponent = (bits >> 10) & 0x1f;
  const uint32_t mantissa = bits & 0x3ff;
  float magnitude;
  if (exponent == 0)
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  else if (exponent == 31)
    magnitude = mantissa ? NAN : INFINITY;
  else
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  uint32_t f;
  std::memcpy(&f, &magnitude, sizeof f);
  f |= sign;
  float out;
  std::memcpy(&out, &f, sizeof out);
  return out;
}

void append_q8_0(const float* x, int64_t n, std::string& out) {
  for (int64_t b = 0; b < n; b += kQ8BlockSize) {
    float amax = 0;
    for (int64_t j = 0; j < kQ8BlockSize; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    put<uint16_t>(out, fp16_bits(d));
    for (int64_t j = 0; j < kQ8BlockSize; ++j) put<int8_t>(out, static_cast<int8_t>(std::round(x[b + j] * id)));
  }
}

void GgufWriter::begin(const std::string& key, uint32_t value_type) {
  put_string(metadata_, key);
  put<uint32_t>(metadata_, value_type);
  ++metadata_count_;
}

void GgufWriter::add_u32(const std::string& key, uint32_t value) { begin(key, kU32), put(metadata_, value); }
void GgufWriter::add_f32(const std::string& key, float value) { begin(key, kF32), put(metadata_, value); }
void GgufWriter::add_bool(const std::string& key, bool value) {
  begin(key, kBool), put<uint8_t>(metadata_, value ? 1 : 0);
}
void GgufWriter::add_string(const std::string& key, const std::string& value) {
  begin(key, kString), put_string(metadata_, value);
}

template <class T>
void GgufWriter::add_array(const std::string& key, uint32_t element_type, const std::vector<T>& values) {
  begin(key, kArray);
  put<uint32_t>(metadata_, element_type);
  put<uint64_t>(metadata_, values.size());
  for (const auto& v : values) {
    if constexpr (std::is_same_v<T, std::string>)
      put_string(metadata_, v);
    else
      put(metadata_, v);
  }
}

void GgufWriter::add_strings(const std::string& key, const std::vector<std::string>& values) {
  add_array(key, kString, values);
}
void GgufWriter::add_f32s(const std::string& key, const std::vector<float>& values) { add_array(key, kF32, values); }
void GgufWriter::add_i32s(const std::string& key, const std::vector<int32_t>& values) { add_array(key, kI32, values); }

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& ne, GgmlType type, const float* data) {
  int64_t count = 1;
  for (int64_t n : ne) count *= n;
  if (type == GgmlType::kQ8_0 && ne[0] % kQ8BlockSize != 0)
    throw std::invalid_argument("tensor " + name + " has rows of " + std::to_string(ne[0]) +
                                " values, which Q8_0 cannot store (it needs a multiple of 32)");
  put_string(tensor_infos_, name);
  put<uint32_t>(tensor_infos_, static_cast<uint32_t>(ne.size()));
  for (int64_t n : ne) put<uint64_t>(tensor_infos_, static_cast<uint64_t>(n));
  put<uint32_t>(tensor_infos_, static_cast<uint32_t>(type));
  put<uint64_t>(tensor_infos_, data_.size());  // offset from the start of the data section
  ++tensor_count_;
  switch (type) {
    case GgmlType::kF32:
      data_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(count) * sizeof(float));
      break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < count; ++i) put<uint16_t>(data_, fp16_bits(data[i]));
      break;
    case GgmlType::kQ8_0:
      append_q8_0(data, count, data_);
      break;
  }
  pad_to_alignment(data_);
}

std::string GgufWriter::bytes() const {
  std::string out(kMagic, 4);
  put<uint32_t>(out, kVersion);
  put<uint64_t>(out, tensor_count_);
  put<uint64_t>(out, metadata_count_);
  out += metadata_;
  out += tensor_infos_;
  pad_to_alignment(out);
  out += data_;
  return out;
}

}  // namespace dracarys
