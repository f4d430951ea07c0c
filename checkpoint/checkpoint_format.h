// The one checkpoint format: a single self-contained file.
//
//   "DRACARYS" | u32 format version | u32 section count
//   sections: u32 name length, name, u64 size, bytes  ("meta", "tokenizer", "model", "optimizer", "muon")
//   SHA-256 of everything above (32 bytes)
//
// "meta" is JSON (model config, training settings and state); "tokenizer" is the serialized
// sentencepiece model (checked by data/tokenizer_model_check.h before sentencepiece reads it);
// "model", "optimizer" and "muon" are named tensors in the safetensors layout (checkpoint/tensor_file.h), read
// by our own bounded parser. The trailing hash refuses a corrupted file; it proves nothing against
// a crafted one (anyone can recompute it), so every section is checked as untrusted input.
//
// Version 1 stored LibTorch archives (pickles, never meant for untrusted input): it is refused.
//
// This file holds the container only (no LibTorch), so the parser can be fuzzed on its own.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "data/errors.h"
#include "model/config.h"

namespace dracarys {

constexpr uint32_t kCheckpointVersion = 2;
// The largest checkpoint read: weights and buffers at their limit, plus AdamW's two moments.
constexpr uint64_t kMaxCheckpointBytes = static_cast<uint64_t>(3 * ModelConfig::kMaxModelBytes) + (uint64_t{1} << 30);

struct CheckpointError : std::runtime_error {
  explicit CheckpointError(const std::string& message) : std::runtime_error(visible_nul(message)) {}
  explicit CheckpointError(const char* message) : std::runtime_error(message) {}
};

struct Checkpoint {
  uint32_t version = kCheckpointVersion;
  ModelConfig config;
  std::string meta_json;  // training settings and state; "{}" when none
  std::string tokenizer;  // serialized tokenizer model
  std::string model;      // the model's parameters and buffers (safetensors layout)
  std::string optimizer;  // AdamW's moments (safetensors layout); may be empty
  std::string muon;       // Muon's momentum (safetensors layout); only with --optimizer muon
};

// The file's bytes, hash included.
std::string encode_checkpoint(const Checkpoint& ckpt);
// Parses a checkpoint's bytes. Throws CheckpointError with a one-line reason naming `path`:
// not a checkpoint, truncated, unknown format version, corrupted (hash mismatch, unless
// `check_hash` is false), or metadata that is malformed, too large or too deep, or describes
// a model whose weights are not in the file.
Checkpoint decode_checkpoint(const std::string& bytes, const std::string& path, bool check_hash = true);

}  // namespace dracarys
