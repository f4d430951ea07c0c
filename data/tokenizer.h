// The one tokenizer type every executable uses: a sentencepiece model (BPE or unigram) with
// byte fallback, so any UTF-8 text encodes, and an end-of-utterance token.
//
// sentencepiece itself is reached through a plugin (spm_plugin_api.h) loaded at run time
// from next to the executable; this header and its users never see sentencepiece or protobuf.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dracarys {

// The one token-id type, at every boundary: the model's (torch::kLong). sentencepiece's own
// int32 ids stay inside tokenizer.cpp.
using TokenId = int64_t;

struct TokenizerOptions {
  std::string model_type = "bpe";  // "bpe" or "unigram"
  int vocab_size = 4096;
  int threads = 2;
  // false: a corpus too small for vocab_size gets a smaller vocabulary instead of an error
  bool exact_vocab_size = true;
};

class Tokenizer {
 public:
  // Trains on normalised lines. Throws DataError with sentencepiece's reason when it cannot
  // (for instance a corpus too small for the vocabulary size asked).
  static Tokenizer train(const std::vector<std::string>& lines, const TokenizerOptions& opts);
  // From a serialized sentencepiece model (as stored in a checkpoint or a .model file).
  static Tokenizer from_bytes(std::string bytes);

  const std::string& bytes() const { return bytes_; }  // serialized model: a valid .model file
  void save(const std::string& path) const;            // for sentencepiece's own tools

  // One utterance without its end marker. Text must be valid UTF-8.
  std::vector<TokenId> encode(std::string_view text) const;
  // End-of-utterance tokens decode to "\n".
  std::string decode(const std::vector<TokenId>& ids) const;
  std::string piece(TokenId id) const;  // the token as text, for labels

  int vocab_size() const { return vocab_size_; }
  TokenId eos_id() const { return eos_id_; }
  // Characters each token stands for (code points; the end marker counts as the line end),
  // to turn a loss per token into bits per character.
  const std::vector<float>& chars_per_token() const { return chars_; }

 private:
  Tokenizer() = default;
  std::shared_ptr<void> handle_;
  std::string bytes_;
  int vocab_size_ = 0;
  TokenId eos_id_ = -1;
  std::vector<float> chars_;
};

// Where the plugin was found (for messages); throws DataError if it cannot be loaded.
std::string tokenizer_plugin_path();

}  // namespace dracarys
