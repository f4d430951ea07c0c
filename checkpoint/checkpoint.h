// Checkpoints on disk, and the model and optimizer state inside them (safetensors layout). The
// container format is checkpoint/checkpoint_format.h. Writes go to a temporary file that is
// flushed, fsync'ed and renamed over the target: a crash at any moment leaves the previous
// checkpoint whole.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>

#include "checkpoint/checkpoint_format.h"
#include "data/tokenizer.h"
#include "model/transformer.h"

namespace dracarys {

void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
// Throws CheckpointError with a one-line reason: missing, truncated, not a checkpoint,
// unknown format version, or corrupted (hash mismatch).
Checkpoint load_checkpoint(const std::string& path);

// A module's parameters and buffers, and AdamW's moments, to and from bytes in the safetensors
// layout (checkpoint/tensor_file.h). Loading checks every tensor's name, dtype and shape against
// the module before a byte is copied; a tensor missing or left over is a CheckpointError.
// Every value loaded must be finite and below kMaxStoredMagnitude (a NaN, an infinity or 3e38
// is refused, naming the tensor). `what` names the section in errors. A model's buffers (the
// causal mask, rotary and sinusoidal tables) are made from its config: with
// StoredBuffers::kRebuilt the file's copies are checked for shape and then ignored.
constexpr float kMaxStoredMagnitude = 1e6f;
enum class StoredBuffers { kLoaded, kRebuilt };
std::string module_bytes(const torch::nn::Module& module);
void load_module_bytes(torch::nn::Module& module, const std::string& bytes, const std::string& what,
                       StoredBuffers buffers);
// The model's weights: "checkpoint weights", buffers rebuilt.
inline void load_model_bytes(torch::nn::Module& model, const std::string& bytes) {
  load_module_bytes(model, bytes, "checkpoint weights", StoredBuffers::kRebuilt);
}
std::string optimizer_bytes(const torch::optim::AdamW& opt);
void load_optimizer_bytes(torch::optim::AdamW& opt, const std::string& bytes);

// A model rebuilt from a checkpoint, on `device`, in eval mode. Every weight must have the shape
// the config gives it (CheckpointError otherwise).
Transformer load_model(const Checkpoint& ckpt, const torch::Device& device);
// The checkpoint's tokenizer; its vocabulary must be the model's.
Tokenizer load_tokenizer(const Checkpoint& ckpt);

// A checkpoint lists at most this many speakers, each named in at most kMaxSpeakerNameBytes
// (the show has a few hundred): a longer list is refused, so that a crafted one cannot fill
// the memory of a server that hands it out on every /props.
constexpr size_t kMaxSpeakers = 65536, kMaxSpeakerNameBytes = 256;

// The speakers of the corpus the checkpoint was trained on, with their utterance counts (empty
// for a checkpoint written before they were stored). Throws CheckpointError when malformed.
// The checkpoint's metadata (its settings, state, speakers and run); CheckpointError when it is
// not a JSON object.
nlohmann::json checkpoint_meta(const Checkpoint& ckpt);

std::map<std::string, int64_t> checkpoint_speakers(const Checkpoint& ckpt);

}  // namespace dracarys
