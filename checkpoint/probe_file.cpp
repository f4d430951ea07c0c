#include "checkpoint/probe_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "checkpoint/json_input.h"
#include "checkpoint/output_files.h"
#include "data/corpus.h"
#include "model/config.h"

namespace dracarys {

namespace {

const std::string kMagic = "DRPROBE1";
constexpr size_t kMaxHeaderBytes = 64 << 10;
constexpr double kRowSumTolerance = 1e-3;  // float32 softmax rows sum to 1 far closer than this

template <class T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // (little-endian machines: the file's byte order)
  out.append(bytes, sizeof(T));
}

template <class T>
T take(const std::string& in, size_t& at) {
  T value;
  std::memcpy(&value, in.data() + at, sizeof(T));
  at += sizeof(T);
  return value;
}

// Every row t of every head's filter: weights in [0, 1] on keys 0..t, 0 after, summing to 1.
void check_filters(const ProbeRecord& r, const float* w, const std::string& what, int64_t step) {
  const int64_t T = r.tokens();
  for (int64_t lh = 0; lh < r.layers * r.heads; ++lh)
    for (int64_t t = 0; t < T; ++t) {
      const float* row = w + (lh * T + t) * T;
      double sum = 0;
      for (int64_t k = 0; k < T; ++k) {
        const bool valid = std::isfinite(row[k]) && row[k] >= 0 && row[k] <= 1 && (k <= t || row[k] == 0);
        if (!valid)
          throw std::invalid_argument(what + ": step " + std::to_string(step) + " holds a weight that no filter can");
        sum += row[k];
      }
      if (std::abs(sum - 1) > kRowSumTolerance)
        throw std::invalid_argument(what + ": step " + std::to_string(step) +
                                    " holds a filter row that does not sum to 1");
    }
}

// The header's fields, checked; `count` receives the number of snapshots it declares.
ProbeRecord parse_header(const std::string& text, const std::string& what, size_t& count) {
  const auto j = parse_untrusted_json(text, what);
  ProbeRecord r;
  try {
    if (!j.at("snapshots").is_number_unsigned()) throw std::invalid_argument(what + ": its snapshot count is not one");
    count = j.at("snapshots").get<size_t>();
    r.text = j.at("text").get<std::string>();
    for (const char* key : {"layers", "heads"})
      if (!j.at(key).is_number_integer()) throw std::invalid_argument(what + ": '" + key + "' is not a whole number");
    if (!j.at("ids").is_array()) throw std::invalid_argument(what + ": its token ids are not a list");
    for (const auto& id : j.at("ids"))  // 1.5 or 3e266 is no token id (and no long)
      if (!id.is_number_integer()) throw std::invalid_argument(what + ": a token id is not a whole number");
    r.ids = j.at("ids").get<std::vector<int64_t>>();
    r.pieces = j.at("pieces").get<std::vector<std::string>>();
    r.layers = j.at("layers").get<int64_t>();
    r.heads = j.at("heads").get<int64_t>();
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument(what + ": its header lacks a field or has one of the wrong type");
  }
  const bool sizes_ok = r.tokens() >= 1 && r.tokens() <= kMaxProbeTokens && r.pieces.size() == r.ids.size() &&
                        r.layers >= 1 && r.layers <= ModelConfig::kMaxLayers && r.heads >= 1 &&
                        r.heads <= ModelConfig::kMaxHeads;
  if (!sizes_ok) throw std::invalid_argument(what + ": its header's sizes are out of range");
  if (r.max_snapshots() < 2) throw std::invalid_argument(what + ": its snapshots would exceed the file's size limit");
  if (count > r.max_snapshots()) throw std::invalid_argument(what + ": it holds more snapshots than allowed");
  return r;
}

}  // namespace

size_t ProbeRecord::max_snapshots() const {
  return std::min(kMaxProbeSnapshots, (kMaxProbeFileBytes - kMaxHeaderBytes) / snapshot_bytes());
}

std::string probe_path(const std::string& checkpoint_path) { return checkpoint_path + ".probe"; }

void add_snapshot(ProbeRecord& r, ProbeSnapshot snapshot) {
  if (!r.snapshots.empty() && snapshot.step < r.snapshots.back().step) return;
  if (!r.snapshots.empty() && snapshot.step == r.snapshots.back().step) {  // an evaluation's, with its loss
    r.snapshots.back() = std::move(snapshot);
    return;
  }
  r.snapshots.push_back(std::move(snapshot));
  if (r.snapshots.size() <= r.max_snapshots()) return;
  // Too many: keep the first and every other one after it, and the newest.
  std::vector<ProbeSnapshot> kept;
  for (size_t i = 0; i + 1 < r.snapshots.size(); i += 2) kept.push_back(std::move(r.snapshots[i]));
  kept.push_back(std::move(r.snapshots.back()));
  r.snapshots = std::move(kept);
}

void drop_after(ProbeRecord& r, int64_t step) {
  while (!r.snapshots.empty() && r.snapshots.back().step > step) r.snapshots.pop_back();
}

std::string probe_bytes(const ProbeRecord& r) {
  const std::string header = nlohmann::json{{"text", r.text},     {"ids", r.ids},     {"pieces", r.pieces},
                                            {"layers", r.layers}, {"heads", r.heads}, {"snapshots", r.snapshots.size()}}
                                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out = kMagic;
  put<uint32_t>(out, static_cast<uint32_t>(header.size()));
  out += header;
  for (const auto& s : r.snapshots) {
    put<int64_t>(out, s.step);
    put<double>(out, s.val_loss);
    out.append(reinterpret_cast<const char*>(s.filters.data()), s.filters.size() * sizeof(float));
  }
  return out;
}

ProbeRecord parse_probe(const std::string& bytes, const std::string& what) {
  if (bytes.size() < kMagic.size() + 4 || bytes.compare(0, kMagic.size(), kMagic) != 0)
    throw std::invalid_argument(what + " is not a probe file (it does not start with " + kMagic + ")");
  size_t at = kMagic.size();
  const auto header_size = take<uint32_t>(bytes, at);
  if (header_size > kMaxHeaderBytes || header_size > bytes.size() - at)
    throw std::invalid_argument(what + ": its header is cut short or too long");
  size_t count = 0;
  ProbeRecord r = parse_header(bytes.substr(at, header_size), what, count);
  at += header_size;
  if (bytes.size() - at != count * r.snapshot_bytes())
    throw std::invalid_argument(what + ": its size does not match the " + std::to_string(count) +
                                " snapshots its header declares (cut short?)");
  for (size_t n = count; n > 0; --n) {
    ProbeSnapshot s;
    s.step = take<int64_t>(bytes, at);
    s.val_loss = take<double>(bytes, at);
    if (s.step < 0 || (!r.snapshots.empty() && s.step <= r.snapshots.back().step))
      throw std::invalid_argument(what + ": its steps do not increase");
    if (!std::isnan(s.val_loss) && !(std::isfinite(s.val_loss) && s.val_loss >= 0))
      throw std::invalid_argument(what + ": step " + std::to_string(s.step) + " holds an impossible loss");
    s.filters.resize(r.snapshot_floats());
    std::memcpy(s.filters.data(), bytes.data() + at, s.filters.size() * sizeof(float));
    at += s.filters.size() * sizeof(float);
    check_filters(r, s.filters.data(), what, s.step);
    r.snapshots.push_back(std::move(s));
  }
  return r;
}

ProbeRecord read_probe_file(const std::string& path) {
  std::string bytes;
  try {
    bytes = read_file(path, kMaxProbeFileBytes);
  } catch (const std::exception& e) {
    throw std::invalid_argument(e.what());
  }
  return parse_probe(bytes, "the probe file " + path);
}

void write_probe_file(const std::string& path, const ProbeRecord& record) {
  write_file_atomic(path, probe_bytes(record));
}

bool is_probe_file(const std::string& path) { return file_head(path, kMagic.size()) == kMagic; }

}  // namespace dracarys
