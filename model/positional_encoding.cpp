#include "model/positional_encoding.h"

#include "model/init.h"

#include <cmath>

namespace dracarys {

PositionalEncodingImpl::PositionalEncodingImpl(const ModelConfig& cfg) {
  if (cfg.positional == PositionalKind::Rotary) return;  // no table: attention rotates Q and K
  if (cfg.positional == PositionalKind::Learned) {
    table_ = register_parameter("table", torch::empty({cfg.context, cfg.d_model}));  // drawn by init_weights
    return;
  }
  // PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))
  auto pos = torch::arange(cfg.context, torch::kFloat).unsqueeze(1);
  auto freq = torch::exp(torch::arange(0, cfg.d_model, 2, torch::kFloat) * (-std::log(10000.0) / cfg.d_model));
  auto table = torch::zeros({cfg.context, cfg.d_model});
  table.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, torch::indexing::None, 2)},
                   torch::sin(pos * freq));
  // An odd d_model has one fewer cosine column than sine columns.
  auto cos_cols = table.index({torch::indexing::Slice(), torch::indexing::Slice(1, torch::indexing::None, 2)});
  cos_cols.copy_(torch::cos(pos * freq).narrow(1, 0, cos_cols.size(1)));
  table_ = register_buffer("table", table);
}

void PositionalEncodingImpl::init_weights() {
  if (!table_.defined() || !table_.requires_grad()) return;  // sinusoidal: a buffer, not learned
  torch::NoGradGuard no_grad;
  table_.normal_(0.0, init::kStd);
}

torch::Tensor PositionalEncodingImpl::forward(int64_t start, int64_t length) { return table_.narrow(0, start, length); }

}  // namespace dracarys
