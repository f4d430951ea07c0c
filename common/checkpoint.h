// The one checkpoint format: a single self-contained file.
//
//   "DRACARYS" | u32 format version | u32 section count
//   sections: u32 name length, name, u64 size, bytes       ("meta", "tokenizer", "model", "optimizer")
//   SHA-256 of everything above (32 bytes)
//
// "meta" is JSON (model config, training settings and state); "tokenizer" is the serialized
// sentencepiece model, opaque here; "model" and "optimizer" are LibTorch archives. LibTorch's
// archives carry no checksum, so the trailing hash is what refuses a corrupted file.
// Writes go to a temporary file that is flushed, fsync'ed and renamed over the target: a crash
// at any moment leaves the previous checkpoint whole.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "model/config.h"
#include "model/transformer.h"
#include "data/tokenizer.h"

namespace dracarys {

constexpr uint32_t kCheckpointVersion = 1;
// The largest checkpoint read: weights and buffers at their limit, plus AdamW's two moments.
constexpr uint64_t kMaxCheckpointBytes = static_cast<uint64_t>(3 * ModelConfig::kMaxModelBytes) + (uint64_t{1} << 30);

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Checkpoint {
  uint32_t version = kCheckpointVersion;
  ModelConfig config;
  std::string meta_json;       // training settings and state; "{}" when none
  std::string tokenizer;       // serialized tokenizer model
  std::string model;           // LibTorch archive of the model's parameters and buffers
  std::string optimizer;       // LibTorch archive of the optimizer state; may be empty
};

void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
// Throws CheckpointError with a one-line reason: missing, truncated, not a checkpoint,
// unknown format version, or corrupted (hash mismatch).
Checkpoint load_checkpoint(const std::string& path);
// The sections after the header (magic, version) of a checkpoint whose hash was checked, or of
// any bytes (the fuzz target): `body` is the file without its hash. Throws CheckpointError.
void parse_checkpoint_sections(const std::string& body, const std::string& path, Checkpoint& c);

// Module and optimizer state to and from archive bytes.
std::string module_bytes(const torch::nn::Module& module);
void load_module_bytes(torch::nn::Module& module, const std::string& bytes);
std::string optimizer_bytes(const torch::optim::Optimizer& opt);
void load_optimizer_bytes(torch::optim::Optimizer& opt, const std::string& bytes);

// A model rebuilt from a checkpoint, on `device`, in eval mode. Every weight must have the shape
// the config gives it (CheckpointError otherwise).
Transformer load_model(const Checkpoint& ckpt, const torch::Device& device);
// The checkpoint's tokenizer; its vocabulary must be the model's.
Tokenizer load_tokenizer(const Checkpoint& ckpt);

}  // namespace dracarys
