#include "common/checkpoint.h"

#include "common/json_input.h"
#include "common/output_files.h"
#include "data/corpus.h"
#include "data/errors.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <set>
#include <vector>

namespace dracarys {

namespace {

constexpr char kMagic[8] = {'D', 'R', 'A', 'C', 'A', 'R', 'Y', 'S'};
constexpr size_t kHashSize = 32;

std::string sha256(const char* data, size_t n) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data, n, out, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

template <typename T>
void put(std::string& buf, T v) {
  buf.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void put_section(std::string& buf, const std::string& name, const std::string& bytes) {
  put<uint32_t>(buf, static_cast<uint32_t>(name.size()));
  buf += name;
  put<uint64_t>(buf, bytes.size());
  buf += bytes;
}

// Reads fields off a byte buffer, refusing to run past its end.
struct Reader {
  const std::string& buf;
  size_t pos;
  size_t end;
  const std::string& path;
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
  std::string bytes(uint64_t n) {
    need(n);
    std::string s = buf.substr(pos, n);
    pos += n;
    return s;
  }
  void need(uint64_t n) {
    if (n > end - pos) throw CheckpointError(path + ": checkpoint is truncated or corrupted (a section runs past the end)");
  }
};

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& c) {
  std::string buf(kMagic, sizeof kMagic);
  put<uint32_t>(buf, c.version);
  const bool has_opt = !c.optimizer.empty();
  put<uint32_t>(buf, has_opt ? 4 : 3);
  nlohmann::json meta = nlohmann::json::parse(c.meta_json.empty() ? "{}" : c.meta_json);
  meta["model_config"] = nlohmann::json::parse(c.config.to_json());
  put_section(buf, "meta", meta.dump());
  put_section(buf, "tokenizer", c.tokenizer);
  put_section(buf, "model", c.model);
  if (has_opt) put_section(buf, "optimizer", c.optimizer);
  buf += sha256(buf.data(), buf.size());

  try {
    write_file_atomic(path, buf);
  } catch (const std::runtime_error& e) {
    throw CheckpointError(std::string("cannot save the checkpoint: ") + e.what());
  }
}

Checkpoint load_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw CheckpointError(path + ": checkpoint not found");
  std::string buf;
  try {
    buf = read_file(path, kMaxCheckpointBytes);
  } catch (const DataError& e) {
    throw CheckpointError(std::string("checkpoint ") + e.what());
  }
  if (buf.size() < sizeof kMagic || std::memcmp(buf.data(), kMagic, sizeof kMagic) != 0)
    throw CheckpointError(path + ": not a dracarys checkpoint");
  if (buf.size() < sizeof kMagic + 8 + kHashSize)
    throw CheckpointError(path + ": checkpoint is truncated (" + std::to_string(buf.size()) + " bytes)");
  Reader r{buf, sizeof kMagic, buf.size() - kHashSize, path};
  Checkpoint c;
  c.version = r.get<uint32_t>();
  if (c.version != kCheckpointVersion)
    throw CheckpointError(path + ": checkpoint format version " + std::to_string(c.version) +
                          " is not supported (this build reads version " + std::to_string(kCheckpointVersion) + ")");
  if (sha256(buf.data(), buf.size() - kHashSize) != buf.substr(buf.size() - kHashSize))
    throw CheckpointError(path + ": checkpoint is corrupted or truncated (SHA-256 mismatch)");
  parse_checkpoint_sections(buf.substr(0, buf.size() - kHashSize), path, c);
  return c;
}

void parse_checkpoint_sections(const std::string& body, const std::string& path, Checkpoint& c) {
  // The hash proves the file is whole, not who wrote it: everything below is checked as
  // untrusted input, before anything large is allocated.
  Reader r{body, sizeof kMagic + 4, body.size(), path};
  const uint32_t sections = r.get<uint32_t>();
  if (sections > 16) throw CheckpointError(path + ": checkpoint claims " + std::to_string(sections) + " sections");
  std::string meta;
  for (uint32_t i = 0; i < sections; ++i) {
    const std::string name = r.bytes(r.get<uint32_t>());
    std::string bytes = r.bytes(r.get<uint64_t>());
    if (name == "meta") meta = std::move(bytes);
    else if (name == "tokenizer") c.tokenizer = std::move(bytes);
    else if (name == "model") c.model = std::move(bytes);
    else if (name == "optimizer") c.optimizer = std::move(bytes);
  }
  if (meta.empty() || c.model.empty() || c.tokenizer.empty())
    throw CheckpointError(path + ": checkpoint lacks its meta, tokenizer or model section");
  try {
    auto j = parse_untrusted_json(meta, "the checkpoint's metadata");
    if (!j.is_object() || !j.contains("model_config") || !j["model_config"].is_object())
      throw std::invalid_argument("the checkpoint's metadata has no model config");
    c.config = ModelConfig::from_json(j["model_config"].dump());
    j.erase("model_config");
    c.meta_json = j.dump();
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(path + ": checkpoint metadata is invalid: " + e.what());
  }
  // The weights of the model the config describes must be in the file: a config that claims a
  // larger model than its weights is refused here, not by an allocation that fails.
  if (static_cast<double>(c.model.size()) < c.config.model_bytes())
    throw CheckpointError(path + ": checkpoint's model config describes " +
                          std::to_string(static_cast<int64_t>(c.config.model_bytes())) +
                          " bytes of weights, but its model section holds only " + std::to_string(c.model.size()));
}

namespace {
// Modules and optimizers both save to and load from LibTorch archives.
template <typename T>
std::string archive_bytes(const T& saved) {
  torch::serialize::OutputArchive ar;
  saved.save(ar);
  std::ostringstream out;
  ar.save_to(out);
  return out.str();
}

template <typename T>
void load_archive_bytes(T& loaded, const std::string& bytes) {
  torch::serialize::InputArchive ar;
  ar.load_from(bytes.data(), bytes.size());
  loaded.load(ar);
}
}  // namespace

// Like Module::load, but every tensor is read into a fresh one and must have the shape and
// type the module expects before it is copied in: LibTorch's own load would adopt whatever
// shape the archive holds and so build a different model than the config says.
void load_checked(torch::nn::Module& module, torch::serialize::InputArchive& ar, const std::string& prefix) {
  auto load_one = [&](const std::string& key, torch::Tensor& target, bool is_buffer) {
    torch::Tensor read;
    if (!ar.try_read(key, read, is_buffer) || !read.defined())
      throw CheckpointError("checkpoint weights lack " + prefix + key);
    if (read.sizes() != target.sizes() || read.scalar_type() != target.scalar_type())
      throw CheckpointError("checkpoint weight " + prefix + key + " has shape " + c10::str(read.sizes()) +
                            ", but its model config needs " + c10::str(target.sizes()));
    torch::NoGradGuard no_grad;
    target.copy_(read);
  };
  std::set<std::string> expected;
  for (auto& p : module.named_parameters(/*recurse=*/false)) load_one(p.key(), p.value(), false), expected.insert(p.key());
  for (auto& b : module.named_buffers(/*recurse=*/false)) load_one(b.key(), b.value(), true), expected.insert(b.key());
  for (auto& child : module.named_children()) expected.insert(child.key());
  for (const auto& key : ar.keys())
    if (!expected.count(key))
      throw CheckpointError("checkpoint weights hold " + prefix + key + ", which its model config has no place for");
  for (auto& child : module.named_children()) {
    torch::serialize::InputArchive child_ar;
    if (!ar.try_read(child.key(), child_ar)) throw CheckpointError("checkpoint weights lack " + prefix + child.key());
    load_checked(*child.value(), child_ar, prefix + child.key() + ".");
  }
}

std::string module_bytes(const torch::nn::Module& module) { return archive_bytes(module); }
void load_module_bytes(torch::nn::Module& module, const std::string& bytes) {
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(bytes.data(), bytes.size());
    load_checked(module, ar, "");
  } catch (const c10::Error&) {
    throw CheckpointError("checkpoint weights cannot be read: the model section is not a LibTorch archive of this model");
  }
}
std::string optimizer_bytes(const torch::optim::Optimizer& opt) { return archive_bytes(opt); }
void load_optimizer_bytes(torch::optim::Optimizer& opt, const std::string& bytes) {
  try {
    load_archive_bytes(opt, bytes);
  } catch (const c10::Error&) {
    throw CheckpointError("checkpoint optimizer state cannot be read: it does not match this model's parameters");
  }
}

Transformer load_model(const Checkpoint& ckpt, const torch::Device& device) {
  Transformer model(ckpt.config);
  load_module_bytes(*model, ckpt.model);
  model->to(device);
  model->eval();
  return model;
}

Tokenizer load_tokenizer(const Checkpoint& ckpt) {
  auto tokenizer = Tokenizer::from_bytes(ckpt.tokenizer);
  if (tokenizer.vocab_size() != ckpt.config.vocab_size)
    throw CheckpointError("checkpoint's tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                          " tokens but its model has " + std::to_string(ckpt.config.vocab_size));
  return tokenizer;
}

}  // namespace dracarys
