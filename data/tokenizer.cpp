#include "data/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "data/errors.h"
#include "data/spm_plugin_api.h"
#include "data/text.h"
#include "data/tokenizer_model_check.h"

namespace fs = std::filesystem;

namespace dracarys {

namespace {

constexpr const char* kPluginName = "libdracarys_spm.so";

struct Plugin {
  const dracarys_spm_api* api = nullptr;
  std::string path;
};

fs::path executable_dir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

// Loads the plugin once. Looked for in $DRACARYS_SPM_PLUGIN, next to the executable (build
// tree), then in ../lib/dracarys and ../lib beside it (install tree).
const Plugin& plugin() {
  static Plugin p;
  static std::once_flag once;
  static std::string error;
  std::call_once(once, [] {
    std::vector<fs::path> candidates;
    if (const char* env = std::getenv("DRACARYS_SPM_PLUGIN")) candidates.emplace_back(env);
    const auto dir = executable_dir();
    candidates.push_back(dir / kPluginName);
    candidates.push_back(dir / ".." / "lib" / "dracarys" / kPluginName);
    candidates.push_back(dir / ".." / "lib" / kPluginName);
    std::string tried;
    for (const auto& c : candidates) {
      tried += (tried.empty() ? "" : ", ") + c.string();
      if (!fs::exists(c)) continue;
      // RTLD_LOCAL keeps sentencepiece's protobuf out of the global namespace; RTLD_DEEPBIND
      // makes the plugin resolve its own symbols first, never LibTorch's protobuf.
      void* lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (!lib) {
        error = std::string("cannot load the tokenizer plugin ") + c.string() + ": " + dlerror();
        return;
      }
      using Entry = const dracarys_spm_api* (*)();
      auto entry = reinterpret_cast<Entry>(dlsym(lib, "dracarys_spm_plugin"));
      if (!entry || entry()->abi_version != DRACARYS_SPM_ABI) {
        error = "tokenizer plugin " + c.string() + " is not a dracarys plugin of ABI version " +
                std::to_string(DRACARYS_SPM_ABI);
        return;
      }
      p.api = entry();
      p.path = fs::weakly_canonical(c).string();
      return;
    }
    error = std::string("tokenizer plugin ") + kPluginName + " not found (looked in " + tried +
            "); set DRACARYS_SPM_PLUGIN to its path";
  });
  if (!p.api) throw DataError(error);
  return p;
}

// sentencepiece's status text ("Internal: ./src/x.cc(580) [condition] message") without the
// source location and the failed condition.
std::string take_error(char* e) {
  std::string s = e ? e : "unknown error";
  if (e) plugin().api->free_buffer(e);
  const size_t cc = s.find(".cc(");
  if (cc != std::string::npos) {
    const size_t close = s.find("] ", cc);
    s = close != std::string::npos ? s.substr(close + 2) : s.substr(0, s.find(':'));
  }
  return s;
}

// The number after `key` in `text`, or -1.
long number_after(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::strtol(text.c_str() + at + key.size(), nullptr, 10);
}

// Our own sentence for sentencepiece's vocabulary-size failures; other failures keep its words.
std::string training_error(const std::string& message, int vocab_size) {
  constexpr int kReserved = 256 + 2;  // byte pieces, then the unknown and end-of-utterance tokens
  const long needed = number_after(message, "smaller than required_chars. " + std::to_string(vocab_size) + " vs ");
  if (needed > 0)
    return "--vocab-size " + std::to_string(vocab_size) + " is too small for this corpus: it needs at least " +
           std::to_string(needed) + " (" + std::to_string(kReserved - 2) + " byte pieces + 2 special tokens + " +
           std::to_string(needed - kReserved) + " characters that cover 99.95% of the text)";
  const long most = number_after(message, "Please set it to a value <= ");
  if (most > 0)
    return "--vocab-size " + std::to_string(vocab_size) + " is too large for this corpus: its text yields at most " +
           std::to_string(most) + " tokens; lower --vocab-size or add text";
  return "the tokenizer could not be trained: " + message;
}

}  // namespace

std::string tokenizer_plugin_path() { return plugin().path; }

Tokenizer Tokenizer::train(const std::vector<std::string>& lines, const TokenizerOptions& opts) {
  const auto* api = plugin().api;
  if (opts.model_type != "bpe" && opts.model_type != "unigram")
    throw DataError("tokenizer type must be 'bpe' or 'unigram', got '" + opts.model_type + "'");
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const auto& l : lines) {
    ptrs.push_back(l.data());
    lens.push_back(l.size());
  }
  // Identity normalisation, no dummy prefix and no whitespace clean-up make decode(encode(x))
  // give back x exactly; byte fallback encodes characters never seen in training.
  std::string args = "--model_type=" + opts.model_type + " --vocab_size=" + std::to_string(opts.vocab_size) +
                     " --byte_fallback=true --character_coverage=0.9995 --normalization_rule_name=identity"
                     " --remove_extra_whitespaces=false --add_dummy_prefix=false --split_digits=true"
                     " --unk_id=0 --eos_id=1 --bos_id=-1 --pad_id=-1 --max_sentence_length=65536"
                     " --num_threads=" +
                     std::to_string(opts.threads) + (opts.exact_vocab_size ? "" : " --hard_vocab_limit=false");
  char* model = nullptr;
  size_t len = 0;
  char* err = nullptr;
  if (api->train(ptrs.data(), lens.data(), ptrs.size(), args.c_str(), &model, &len, &err) != 0)
    throw DataError(training_error(take_error(err), opts.vocab_size));
  std::string bytes(model, len);
  api->free_buffer(model);
  return from_bytes(std::move(bytes));
}

Tokenizer Tokenizer::from_bytes(std::string bytes) {
  const auto* api = plugin().api;
  char* err = nullptr;
  check_tokenizer_model(bytes);  // before sentencepiece parses a byte of it
  void* h = api->load(bytes.data(), bytes.size(), &err);
  if (!h) {
    // sentencepiece's own text (its status codes, the piece it choked on) stays out of the message.
    const std::string reason = take_error(err);
    const std::string why = reason.find("already defined") != std::string::npos ? "a piece is defined twice"
                            : reason.find("byte piece") != std::string::npos    ? "one of its byte pieces is malformed"
                                                                                : "its pieces do not fit together";
    throw DataError("the tokenizer model cannot be loaded: " + why);
  }
  Tokenizer t;
  t.handle_ = std::shared_ptr<void>(h, [api](void* p) { api->release(p); });
  t.bytes_ = std::move(bytes);
  t.vocab_size_ = api->vocab_size(h);
  t.eos_id_ = api->eos_id(h);
  if (t.eos_id_ < 0) throw DataError("tokenizer model has no end-of-utterance token");
  t.chars_.resize(t.vocab_size_);
  for (int id = 0; id < t.vocab_size_; ++id) {
    if (id == t.eos_id_) {
      t.chars_[id] = 1.0f;
      continue;
    }  // stands for the line end
    if (api->is_control(h, id)) {
      t.chars_[id] = 0.0f;
      continue;
    }
    std::string p = t.piece(id);
    if (api->is_byte(h, id)) {  // "<0xE2>": a lead byte starts a character, continuation bytes don't
      unsigned v = static_cast<unsigned>(std::strtoul(p.c_str() + 3, nullptr, 16));
      t.chars_[id] = (v & 0xC0) == 0x80 ? 0.0f : 1.0f;
    } else {
      t.chars_[id] = static_cast<float>(count_chars(p));  // "▁" is one character (a space)
    }
  }
  return t;
}

void Tokenizer::save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes_.data(), static_cast<std::streamsize>(bytes_.size()));
  if (!out.flush()) throw DataError(path + ": cannot write the tokenizer model");
}

std::vector<TokenId> Tokenizer::encode(std::string_view text) const {
  size_t bad = 0;
  if (!valid_utf8(text, &bad)) throw DataError("text is not valid UTF-8 (at byte " + std::to_string(bad) + ")");
  const auto* api = plugin().api;
  int32_t* ids = nullptr;
  size_t n = 0;
  char* err = nullptr;
  if (api->encode(handle_.get(), text.data(), text.size(), &ids, &n, &err) != 0)
    throw DataError("tokenizer cannot encode text: " + take_error(err));
  std::vector<TokenId> out(ids, ids + n);
  api->free_buffer(ids);
  return out;
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids) const {
  const auto* api = plugin().api;
  for (TokenId id : ids)
    if (id < 0 || id >= vocab_size_)
      throw DataError("token id " + std::to_string(id) + " is outside the vocabulary of " +
                      std::to_string(vocab_size_));
  const std::vector<int32_t> ids32(ids.begin(), ids.end());  // sentencepiece's id type
  std::string text;
  size_t start = 0;
  for (size_t i = 0; i <= ids.size(); ++i) {
    if (i < ids.size() && ids[i] != eos_id_) continue;
    if (i > start) {
      char* out = nullptr;
      size_t len = 0;
      char* err = nullptr;
      if (api->decode(handle_.get(), ids32.data() + start, i - start, &out, &len, &err) != 0)
        throw DataError("tokenizer cannot decode: " + take_error(err));
      text.append(out, len);
      api->free_buffer(out);
    }
    if (i < ids.size()) text.push_back('\n');
    start = i + 1;
  }
  return text;
}

std::string Tokenizer::piece(TokenId id) const {
  if (id < 0 || id >= vocab_size_) throw DataError("token id " + std::to_string(id) + " is outside the vocabulary");
  const auto* api = plugin().api;
  char* p = api->id_to_piece(handle_.get(), static_cast<int>(id));
  std::string s = p ? p : "";
  api->free_buffer(p);
  return s;
}

}  // namespace dracarys
