#include "engine/probe.h"

#include <fmt/format.h>

#include <algorithm>

#include "engine/attention_weights.h"

namespace dracarys {

ProbeRecord start_probe(const Transformer& model, const Tokenizer& tok, const std::string& text) {
  ProbeRecord r;
  r.text = text;
  r.ids = tok.encode(text);
  if (r.ids.empty()) throw std::invalid_argument("--probe has no tokens; give a line, or --probe \"\" for none");
  r.ids.resize(std::min<size_t>(r.ids.size(), std::min(kMaxProbeTokens, model->config().context)));
  for (auto id : r.ids) r.pieces.push_back(display_piece(tok.piece(id)));
  r.layers = model->config().layers;
  r.heads = model->config().heads;
  if (r.max_snapshots() < 2)
    throw std::invalid_argument(
        fmt::format("--probe: one snapshot of this model's {} layers × {} heads would take {} "
                    "bytes, too many for the probe file's {} MiB; use --probe \"\"",
                    r.layers, r.heads, r.snapshot_bytes(), kMaxProbeFileBytes >> 20));
  return r;
}

void record_probe(ProbeRecord& r, Transformer& model, int64_t step, double val_loss) {
  if (!r.snapshots.empty() && step <= r.snapshots.back().step) return;
  const bool was_training = model->is_training();
  std::vector<AttentionTrace> traces;
  {
    torch::NoGradGuard no_grad;
    model->eval();
    model->forward(one_sequence(r.ids, model->head_weight().device()), nullptr, &traces);
    if (was_training) model->train();
  }
  ProbeSnapshot s{step, val_loss, {}};
  s.filters.reserve(r.snapshot_floats());
  for (const auto& t : traces) {
    auto w = t.filter.select(0, 0).to(torch::kCPU, torch::kFloat).contiguous();  // [heads, T, T]
    s.filters.insert(s.filters.end(), w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
  }
  add_snapshot(r, std::move(s));
}

void check_probe_fits(const ProbeRecord& record, const ModelConfig& model, const std::string& path) {
  if (record.layers != model.layers || record.heads != model.heads)
    throw std::invalid_argument("the probe file " + path + " was recorded for another model's shape (" +
                                std::to_string(record.layers) + " layers x " + std::to_string(record.heads) +
                                " heads; this checkpoint has " + std::to_string(model.layers) + " x " +
                                std::to_string(model.heads) + ")");
  for (auto id : record.ids)
    if (id < 0 || id >= model.vocab_size)
      throw std::invalid_argument("the probe file " + path + " holds tokens outside this model's vocabulary");
}

}  // namespace dracarys
