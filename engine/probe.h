// The probe: one line whose attention filters training records at every evaluation and every
// --probe-every steps between, so that a reader can watch them form, from the random filters of
// step 0 to meaningful ones
// (dracarys-train --probe; the page's slider, GET /probe; dracarys-infer --probe-strip). The
// file's format is checkpoint/probe_file.h's.
#pragma once

#include <string>

#include "checkpoint/probe_file.h"
#include "data/tokenizer.h"
#include "model/transformer.h"

namespace dracarys {

// A new record for `text`, tokenised as the model reads it; a longer line keeps its first
// kMaxProbeTokens tokens (and no more than the context). Throws std::invalid_argument when the
// text has no tokens or when even two snapshots would not fit in kMaxProbeFileBytes.
ProbeRecord start_probe(const Transformer& model, const Tokenizer& tok, const std::string& text);
// The model's filters for the probe now (eval mode; a training model is put back in training
// mode), recorded as `step` (add_snapshot).
void record_probe(ProbeRecord& record, Transformer& model, int64_t step, double val_loss);
// Throws std::invalid_argument, naming `path`, when the record was made for another shape
// (layers, heads) or holds token ids outside the model's vocabulary.
void check_probe_fits(const ProbeRecord& record, const ModelConfig& model, const std::string& path);

}  // namespace dracarys
