#include "checkpoint/checkpoint_format.h"

#include <openssl/evp.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "checkpoint/json_input.h"

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
    if (n > end - pos)
      throw CheckpointError(path + ": checkpoint is truncated or corrupted (a section runs past the end)");
  }
};

}  // namespace

std::string encode_checkpoint(const Checkpoint& c) {
  std::string buf(kMagic, sizeof kMagic);
  put<uint32_t>(buf, c.version);
  const bool has_opt = !c.optimizer.empty(), has_muon = !c.muon.empty();
  put<uint32_t>(buf, 3 + (has_opt ? 1 : 0) + (has_muon ? 1 : 0));
  nlohmann::json meta = nlohmann::json::parse(c.meta_json.empty() ? "{}" : c.meta_json);
  meta["model_config"] = nlohmann::json::parse(c.config.to_json());
  put_section(buf, "meta", meta.dump());
  put_section(buf, "tokenizer", c.tokenizer);
  put_section(buf, "model", c.model);
  if (has_opt) put_section(buf, "optimizer", c.optimizer);
  if (has_muon) put_section(buf, "muon", c.muon);
  buf += sha256(buf.data(), buf.size());

  return buf;
}

Checkpoint decode_checkpoint(const std::string& buf, const std::string& path, bool check_hash) {
  if (buf.size() < sizeof kMagic || std::memcmp(buf.data(), kMagic, sizeof kMagic) != 0)
    throw CheckpointError(path + ": not a dracarys checkpoint");
  if (buf.size() < sizeof kMagic + 8 + kHashSize)
    throw CheckpointError(path + ": checkpoint is truncated (" + std::to_string(buf.size()) + " bytes)");
  Reader r{buf, sizeof kMagic, buf.size() - kHashSize, path};
  Checkpoint c;
  c.version = r.get<uint32_t>();
  if (c.version == 1)
    throw CheckpointError(path +
                          ": checkpoint format version 1 (written by an earlier dracarys) stores LibTorch archives, "
                          "which a crafted file can use to crash the program; it is no longer read. Train it again "
                          "with this dracarys-train");
  if (c.version != kCheckpointVersion)
    throw CheckpointError(path + ": checkpoint format version " + std::to_string(c.version) +
                          " is not supported (this build reads version " + std::to_string(kCheckpointVersion) + ")");
  if (check_hash && sha256(buf.data(), buf.size() - kHashSize) != buf.substr(buf.size() - kHashSize))
    throw CheckpointError(path + ": checkpoint is corrupted or truncated (SHA-256 mismatch)");
  // The hash proves the file is whole, not who wrote it: everything below is checked as
  // untrusted input, before anything large is allocated.
  const uint32_t sections = r.get<uint32_t>();
  if (sections > 16) throw CheckpointError(path + ": checkpoint claims " + std::to_string(sections) + " sections");
  std::string meta;
  for (uint32_t i = 0; i < sections; ++i) {
    const std::string name = r.bytes(r.get<uint32_t>());
    std::string bytes = r.bytes(r.get<uint64_t>());
    if (name == "meta")
      meta = std::move(bytes);
    else if (name == "tokenizer")
      c.tokenizer = std::move(bytes);
    else if (name == "model")
      c.model = std::move(bytes);
    else if (name == "optimizer")
      c.optimizer = std::move(bytes);
    else if (name == "muon")
      c.muon = std::move(bytes);
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
  return c;
}

}  // namespace dracarys
