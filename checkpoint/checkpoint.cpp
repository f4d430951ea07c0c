#include "checkpoint/checkpoint.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <set>
#include <utility>
#include <vector>

#include "checkpoint/output_files.h"
#include "checkpoint/tensor_file.h"
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
  // The magic first: a large file that is not a checkpoint is refused before it is read.
  if (!is_checkpoint_file(path) && std::filesystem::is_regular_file(path, ec))
    throw CheckpointError(path + ": not a dracarys checkpoint");
  std::string buf;
  try {
    buf = read_file(path, kMaxCheckpointBytes);
  } catch (const DataError& e) {
    throw CheckpointError(std::string("checkpoint ") + e.what());
  }
  return decode_checkpoint(buf, path);
}

namespace {

DType dtype_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat:
      return DType::kF32;
    case torch::kLong:
      return DType::kI64;
    case torch::kBool:
      return DType::kBool;
    default:
      throw std::invalid_argument("a tensor of type " + std::string(c10::toString(t.scalar_type())) +
                                  " cannot be saved in a checkpoint");
  }
}

// Named tensors to bytes; `keep` holds the contiguous CPU copies while they are written.
std::string tensors_to_bytes(const std::vector<std::pair<std::string, torch::Tensor>>& named,
                             const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;
  std::vector<TensorToWrite> out;
  for (const auto& [name, tensor] : named) {
    keep.push_back(tensor.detach().to(torch::kCPU).contiguous());
    const auto& t = keep.back();
    out.push_back({name, dtype_of(t), t.sizes().vec(), t.data_ptr(), static_cast<size_t>(t.nbytes())});
  }
  return encode_tensor_file(out, metadata);
}

// Copies the entry's bytes into `target` once its dtype and shape are the target's.
void copy_checked(const std::string& bytes, const TensorEntry& e, const std::string& name, torch::Tensor& target,
                  const std::string& what) {
  if (e.dtype != dtype_of(target) || e.shape != target.sizes().vec())
    throw CheckpointError(what + " " + name + " has shape " + c10::str(c10::IntArrayRef(e.shape)) +
                          ", but its model config needs " + c10::str(target.sizes()));
  auto host = torch::empty(target.sizes(), target.options().device(torch::kCPU));
  std::memcpy(host.data_ptr(), bytes.data() + e.offset, e.bytes);
  torch::NoGradGuard no_grad;
  target.copy_(host);
}

std::map<std::string, TensorEntry> parse_section(const std::string& bytes, const std::string& what) {
  try {
    return parse_tensor_file(bytes, what);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(e.what());
  }
}

// AdamW's state of the i-th parameter (in the order of its groups) is stored as "i.step",
// "i.exp_avg" and "i.exp_avg_sq".
std::string state_key(size_t index, const char* field) { return std::to_string(index) + "." + field; }

}  // namespace

std::string module_bytes(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : module.named_parameters()) named.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers()) named.emplace_back(b.key(), b.value());
  return tensors_to_bytes(named, {{"format", "dracarys weights"}});
}

namespace {
// Finite, and within kMaxStoredMagnitude: what training ever writes.
bool plausible_values(const torch::Tensor& t) {
  if (!t.is_floating_point() || t.numel() == 0) return true;
  torch::NoGradGuard no_grad;
  return torch::isfinite(t).all().item<bool>() && t.abs().max().item<float>() <= kMaxStoredMagnitude;
}
}  // namespace

void load_module_bytes(torch::nn::Module& module, const std::string& bytes, const std::string& what,
                       StoredBuffers buffers) {
  auto entries = parse_section(bytes, what);
  std::set<std::string> expected;
  auto load_one = [&](const std::string& name, torch::Tensor target, bool keep_built) {
    const auto it = entries.find(name);
    if (it == entries.end()) throw CheckpointError("the " + what + " lack " + name);
    auto loaded = keep_built ? target.clone() : target;  // a rebuilt buffer's stored copy is read, then dropped
    copy_checked(bytes, it->second, name, loaded, "in the " + what + ", tensor");
    if (!keep_built && !plausible_values(loaded))
      throw CheckpointError("in the " + what + ", tensor " + name +
                            " holds values that are not finite or beyond 1e6 (a damaged or crafted file)");
    expected.insert(name);
  };
  for (auto& p : module.named_parameters()) load_one(p.key(), p.value(), false);
  for (auto& b : module.named_buffers()) load_one(b.key(), b.value(), buffers == StoredBuffers::kRebuilt);
  for (const auto& [name, entry] : entries)
    if (!expected.count(name))
      throw CheckpointError("the " + what + " hold " + name + ", which its model config has no place for");
}

std::string optimizer_bytes(const torch::optim::AdamW& opt) {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  size_t index = 0;
  for (const auto& group : opt.param_groups())
    for (const auto& p : group.params()) {
      const auto it = opt.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it != opt.state().end()) {
        const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
        named.emplace_back(state_key(index, "step"), torch::tensor(st.step(), torch::kLong));
        named.emplace_back(state_key(index, "exp_avg"), st.exp_avg());
        named.emplace_back(state_key(index, "exp_avg_sq"), st.exp_avg_sq());
      }
      ++index;
    }
  return tensors_to_bytes(named, {{"format", "dracarys AdamW state"}});
}

void load_optimizer_bytes(torch::optim::AdamW& opt, const std::string& bytes) {
  const std::string what = "checkpoint optimizer state";
  auto entries = parse_section(bytes, what);
  size_t index = 0, loaded = 0;
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) {
      const auto step = entries.find(state_key(index, "step"));
      if (step != entries.end()) {
        auto count = torch::zeros({}, torch::kLong), exp_avg = torch::zeros_like(p), exp_avg_sq = torch::zeros_like(p);
        copy_checked(bytes, step->second, state_key(index, "step"), count, what);
        for (auto [field, target] : {std::pair{"exp_avg", &exp_avg}, std::pair{"exp_avg_sq", &exp_avg_sq}}) {
          const auto it = entries.find(state_key(index, field));
          if (it == entries.end()) throw CheckpointError(what + " lacks " + state_key(index, field));
          copy_checked(bytes, it->second, state_key(index, field), *target, what);
        }
        if (count.item<int64_t>() < 0) throw CheckpointError(what + " has a negative step count");
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->step(count.item<int64_t>());
        st->exp_avg(exp_avg);
        st->exp_avg_sq(exp_avg_sq);
        opt.state()[c10::guts::to_string(p.unsafeGetTensorImpl())] = std::move(st);
        loaded += 3;
      }
      ++index;
    }
  if (loaded != entries.size()) throw CheckpointError(what + " holds tensors for parameters its model does not have");
}

Transformer load_model(const Checkpoint& ckpt, const torch::Device& device) {
  Transformer model(ckpt.config);
  load_model_bytes(*model, ckpt.model);
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

nlohmann::json checkpoint_meta(const Checkpoint& ckpt) {
  auto meta = nlohmann::json::parse(ckpt.meta_json, nullptr, /*allow_exceptions=*/false);
  if (!meta.is_object()) throw CheckpointError("the checkpoint's metadata is not a JSON object");
  return meta;
}

std::map<std::string, int64_t> checkpoint_speakers(const Checkpoint& ckpt) {
  const auto bad = [] { return CheckpointError("checkpoint's speaker list is malformed"); };
  const auto meta = checkpoint_meta(ckpt);
  std::map<std::string, int64_t> speakers;
  if (!meta.contains("speakers")) return speakers;
  const auto& list = meta["speakers"];
  if (!list.is_object()) throw bad();
  if (list.size() > kMaxSpeakers)
    throw CheckpointError("checkpoint lists " + std::to_string(list.size()) + " speakers, more than the limit of " +
                          std::to_string(kMaxSpeakers));
  for (const auto& [name, count] : list.items()) {
    if (!count.is_number_integer() || count.get<int64_t>() < 0 || name.size() > kMaxSpeakerNameBytes) throw bad();
    speakers[name] = count.get<int64_t>();
  }
  return speakers;
}

}  // namespace dracarys
