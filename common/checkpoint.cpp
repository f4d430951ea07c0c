#include "common/checkpoint.h"

#include "common/output_files.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
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
  if (std::filesystem::is_directory(path, ec)) throw CheckpointError(path + ": is a folder, not a checkpoint");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(path + ": checkpoint cannot be read");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string buf = ss.str();
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
  const uint32_t sections = r.get<uint32_t>();
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
    auto j = nlohmann::json::parse(meta);
    c.config = ModelConfig::from_json(j.at("model_config").dump());
    j.erase("model_config");
    c.meta_json = j.dump();
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": checkpoint metadata is invalid: " + e.what());
  }
  return c;
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

std::string module_bytes(const torch::nn::Module& module) { return archive_bytes(module); }
void load_module_bytes(torch::nn::Module& module, const std::string& bytes) { load_archive_bytes(module, bytes); }
std::string optimizer_bytes(const torch::optim::Optimizer& opt) { return archive_bytes(opt); }
void load_optimizer_bytes(torch::optim::Optimizer& opt, const std::string& bytes) { load_archive_bytes(opt, bytes); }

Transformer load_model(const Checkpoint& ckpt, const torch::Device& device) {
  Transformer model(ckpt.config);
  try {
    load_module_bytes(*model, ckpt.model);
  } catch (const c10::Error& e) {
    throw CheckpointError(std::string("checkpoint weights do not fit its model config: ") + e.what_without_backtrace());
  }
  model->to(device);
  model->eval();
  return model;
}

}  // namespace dracarys
