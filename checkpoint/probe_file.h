// The probe file: one line's attention filters, every layer and head, as training recorded them
// at its evaluations (dracarys-train --probe; engine/probe.h records them). It sits beside the
// checkpoint, "OUT.probe":
//   "DRPROBE1"                          8 bytes: magic and version
//   header length                       uint32, little-endian
//   header                              JSON: {"text", "ids", "pieces", "layers", "heads", "snapshots"}
//   that many snapshots, nothing after:  each int64 step, float64 validation loss (NaN: none),
//                                       float32 filters [layers, heads, T, T] (row t: query t)
// Its size is bounded: T ≤ kMaxProbeTokens, and at most kMaxProbeSnapshots snapshots within
// kMaxProbeFileBytes. When a run records more, every other snapshot is dropped (the first and
// the newest always stay), so the file spans the whole run ever more sparsely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dracarys {

constexpr int64_t kMaxProbeTokens = 32;
constexpr size_t kMaxProbeSnapshots = 128;
constexpr size_t kMaxProbeFileBytes = size_t{16} << 20;  // 16 MiB

struct ProbeSnapshot {
  int64_t step = 0;
  double val_loss = 0;         // NaN when the run has no validation set
  std::vector<float> filters;  // [layers, heads, T, T]
};

struct ProbeRecord {
  std::string text;                 // the probe line as given
  std::vector<int64_t> ids;         // its tokens, [T]
  std::vector<std::string> pieces;  // their display text
  int64_t layers = 0, heads = 0;
  std::vector<ProbeSnapshot> snapshots;  // steps strictly increasing

  int64_t tokens() const { return static_cast<int64_t>(ids.size()); }
  size_t snapshot_floats() const { return static_cast<size_t>(layers * heads * tokens() * tokens()); }
  size_t snapshot_bytes() const { return 16 + 4 * snapshot_floats(); }
  // How many snapshots the file may hold: kMaxProbeSnapshots, or fewer for a large model.
  size_t max_snapshots() const;
};

std::string probe_path(const std::string& checkpoint_path);  // "PATH.probe"

// Appends a snapshot (one of the newest recorded step replaces it: an evaluation's, with its
// loss; an earlier step is not recorded) and, past max_snapshots(), keeps the first, every other
// one after it, and the newest.
void add_snapshot(ProbeRecord& record, ProbeSnapshot snapshot);
// Forgets the snapshots after `step`: a resumed run continues from its checkpoint's step.
void drop_after(ProbeRecord& record, int64_t step);

std::string probe_bytes(const ProbeRecord& record);
// Throws std::invalid_argument naming `what` when the bytes are not a whole, consistent probe
// file: magic, header, sizes, steps, and every filter row a distribution over earlier tokens.
ProbeRecord parse_probe(const std::string& bytes, const std::string& what);
ProbeRecord read_probe_file(const std::string& path);
void write_probe_file(const std::string& path, const ProbeRecord& record);  // atomically
bool is_probe_file(const std::string& path);                                // starts with the magic

}  // namespace dracarys
