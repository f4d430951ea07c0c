#include "data/tokenizer_model_check.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "data/errors.h"
#include "data/text.h"

namespace dracarys {

namespace {

// Protobuf wire types.
enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

// One field of a message: its number, wire type and value (a number, or the bytes it holds).
struct Field {
  uint32_t number = 0;
  Wire wire = kVarint;
  uint64_t number_value = 0;
  std::string_view bytes;
};

DataError bad(const std::string& why) { return DataError("the tokenizer model is not one dracarys writes: " + why); }

// Reads the fields of one message, refusing anything that runs past its end.
class Fields {
 public:
  explicit Fields(std::string_view message) : rest_(message) {}

  bool next(Field& f) {
    if (rest_.empty()) return false;
    const uint64_t key = varint();
    if (key >> 32 || (key >> 3) == 0) throw bad("a field number is out of range");
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<Wire>(key & 7);
    switch (f.wire) {
      case kVarint:
        f.number_value = varint();
        break;
      case kFixed64:
        f.number_value = fixed(8);
        break;
      case kFixed32:
        f.number_value = fixed(4);
        break;
      case kBytes: {
        const uint64_t n = varint();
        if (n > rest_.size()) throw bad("a field runs past the end of the file");
        f.bytes = rest_.substr(0, static_cast<size_t>(n));
        rest_.remove_prefix(static_cast<size_t>(n));
        break;
      }
      default:
        throw bad("a field has an unknown wire type");
    }
    return true;
  }

 private:
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (rest_.empty()) throw bad("a number runs past the end of the file");
      const auto byte = static_cast<unsigned char>(rest_.front());
      rest_.remove_prefix(1);
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (byte < 0x80) return v;
    }
    throw bad("a number is longer than 64 bits");
  }
  uint64_t fixed(size_t n) {
    if (rest_.size() < n) throw bad("a number runs past the end of the file");
    uint64_t v = 0;
    std::memcpy(&v, rest_.data(), n);  // little-endian, as protobuf writes it
    rest_.remove_prefix(n);
    return v;
  }
  std::string_view rest_;
};

TokenizerPiece read_piece(std::string_view message) {
  TokenizerPiece piece;
  Field f;
  bool has_text = false;
  for (Fields fields(message); fields.next(f);) {
    if (f.number == 1 && f.wire == kBytes) {
      if (f.bytes.empty() || f.bytes.size() > kMaxPieceBytes || !valid_utf8(f.bytes))
        throw bad("a piece is empty, longer than " + std::to_string(kMaxPieceBytes) + " bytes or not UTF-8");
      piece.text = std::string(f.bytes);
      has_text = true;
    } else if (f.number == 2 && f.wire == kFixed32) {
      float score;
      const auto bits = static_cast<uint32_t>(f.number_value);
      std::memcpy(&score, &bits, sizeof score);
      if (!std::isfinite(score)) throw bad("a piece's score is not a finite number");
      piece.score = score;
    } else if (f.number == 3 && f.wire == kVarint) {
      if (f.number_value < 1 || f.number_value > 6) throw bad("a piece has an unknown type");
      piece.type = static_cast<int>(f.number_value);
    } else {
      throw bad("a piece has an unexpected field " + std::to_string(f.number));
    }
  }
  if (!has_text) throw bad("a piece has no text");
  return piece;
}

TokenizerKind read_trainer_spec(std::string_view message) {
  Field f;
  auto kind = TokenizerKind::kUnigram;
  for (Fields fields(message); fields.next(f);) {
    if (f.number != 3) continue;
    if (f.wire != kVarint || (f.number_value != 1 && f.number_value != 2))
      throw bad("its model type is neither unigram nor BPE");
    kind = static_cast<TokenizerKind>(f.number_value);
  }
  return kind;
}

// The normaliser (and the denormaliser): identity, with no character map and no rules.
void check_normalizer(std::string_view message, bool is_denormalizer) {
  Field f;
  bool identity = is_denormalizer;
  for (Fields fields(message); fields.next(f);) {
    if (f.number == 1 && f.wire == kBytes)
      identity = f.bytes == "identity" || (is_denormalizer && f.bytes.empty());
    else if ((f.number == 2 || f.number == 6) && !(f.wire == kBytes && f.bytes.empty()))
      throw bad("its normaliser carries a character map or rules (dracarys trains with none)");
  }
  if (!identity) throw bad("its normaliser is not the identity dracarys trains with");
}

}  // namespace

void check_tokenizer_model(std::string_view bytes) { (void)read_tokenizer_model(bytes); }

TokenizerModel read_tokenizer_model(std::string_view bytes) {
  TokenizerModel model;
  Field f;
  size_t pieces = 0;
  bool normalizer = false;
  for (Fields fields(bytes); fields.next(f);) {
    const bool message = f.wire == kBytes;
    if (f.number == 1 && message) {
      if (++pieces > kMaxPieces) throw bad("it has more than " + std::to_string(kMaxPieces) + " pieces");
      model.pieces.push_back(read_piece(f.bytes));
    } else if (f.number == 2 && message) {
      model.kind = read_trainer_spec(f.bytes);
    } else if (f.number == 3 && message) {
      check_normalizer(f.bytes, false);
      normalizer = true;
    } else if (f.number == 5 && message) {
      check_normalizer(f.bytes, true);
    } else {
      throw bad("it has an unexpected field " + std::to_string(f.number));
    }
  }
  if (pieces == 0) throw bad("it has no pieces");
  if (!normalizer) throw bad("it has no normaliser");
  return model;
}

}  // namespace dracarys
