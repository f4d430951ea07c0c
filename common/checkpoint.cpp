#include "common/checkpoint.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>
#include <sstream>

#include "common/output_files.h"
#include "data/corpus.h"
#include "data/errors.h"

namespace dracarys {

void save_checkpoint(const std::string& path, const Checkpoint& c) {
  const std::string buf = encode_checkpoint(c);
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
  return decode_checkpoint(buf, path);
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
  for (auto& p : module.named_parameters(/*recurse=*/false))
    load_one(p.key(), p.value(), false), expected.insert(p.key());
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
    throw CheckpointError(
        "checkpoint weights cannot be read: the model section is not a LibTorch archive of this model");
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

std::map<std::string, int64_t> checkpoint_speakers(const Checkpoint& ckpt) {
  const auto bad = [] { return CheckpointError("checkpoint's speaker list is malformed"); };
  const auto meta = nlohmann::json::parse(ckpt.meta_json, nullptr, /*allow_exceptions=*/false);
  if (!meta.is_object()) throw bad();
  std::map<std::string, int64_t> speakers;
  if (!meta.contains("speakers")) return speakers;
  const auto& list = meta["speakers"];
  if (!list.is_object()) throw bad();
  for (const auto& [name, count] : list.items()) {
    if (!count.is_number_integer() || count.get<int64_t>() < 0) throw bad();
    speakers[name] = count.get<int64_t>();
  }
  return speakers;
}

}  // namespace dracarys
