// A sentencepiece model file checked before sentencepiece parses it. Every checkpoint carries one,
// and a crafted one reached out-of-bounds reads inside sentencepiece (a precompiled_charsmap
// that its normaliser trusts). The model is a protobuf ModelProto; this walks its wire format
// with every length checked against the bytes, and accepts only what dracarys-train writes:
//
//   ModelProto
//     1 pieces (repeated)       1 piece: UTF-8, 1..kMaxPieceBytes   2 score: finite   3 type: 1..6
//     2 trainer_spec            3 model_type: UNIGRAM (1) or BPE (2); other fields unread
//     3 normalizer_spec         1 name: "identity"   2 precompiled_charsmap: empty   6 rules: empty
//     5 denormalizer_spec       (optional) no charsmap, no rules
//
// No sentencepiece or protobuf here, so the check is fuzzed on its own (tests/fuzz/).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace dracarys {

constexpr size_t kMaxPieceBytes = 1024;
constexpr size_t kMaxPieces = size_t{1} << 20;  // ModelConfig::kMaxVocab

// Throws DataError with a one-line reason when `bytes` is not a tokenizer model of that shape.
void check_tokenizer_model(std::string_view bytes);

// What a checked model holds, for writing it in another format (dracarys-export's GGUF).
enum class TokenizerKind { kUnigram = 1, kBpe = 2 };  // trainer_spec.model_type; unigram when absent
struct TokenizerPiece {
  std::string text;  // "▁the", "<0x0A>", "</s>"
  float score = 0;   // BPE: merge priority (higher first); unigram: log probability
  int type = 1;      // sentencepiece's: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
};
struct TokenizerModel {
  TokenizerKind kind = TokenizerKind::kUnigram;
  std::vector<TokenizerPiece> pieces;  // in id order
};

// Checks `bytes` as check_tokenizer_model does and returns its kind and pieces.
TokenizerModel read_tokenizer_model(std::string_view bytes);

}  // namespace dracarys
