#include "train/optimizer.h"

#include "checkpoint/checkpoint.h"

namespace dracarys {

namespace {

// Muon's matrices: the decoder blocks' 2-D weights. Attention's fused Q, K, V projection is three
// matrices side by side; each is orthogonalised on its own.
bool for_muon(const std::string& name, const torch::Tensor& p) { return p.dim() == 2 && name.rfind("blocks.", 0) == 0; }
int64_t row_blocks(const std::string& name) {
  const std::string fused = ".attn.qkv.weight";
  return name.size() > fused.size() && name.compare(name.size() - fused.size(), fused.size(), fused) == 0 ? 3 : 1;
}

}  // namespace

Optimizer::Optimizer(Transformer& model, const TrainOptions& o)
    : adamw_peak_(o.lr), muon_peak_(o.muon_lr), ns_steps_(o.muon_ns_steps) {
  const bool muon = o.optimizer == "muon";
  std::vector<torch::Tensor> decay, no_decay;
  std::vector<Muon::Matrix> matrices;
  for (auto& item : model->named_parameters()) {
    auto& p = item.value();
    params_.push_back(p);
    if (muon && for_muon(item.key(), p))
      matrices.push_back({p, row_blocks(item.key())});
    else
      (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  auto opts = torch::optim::AdamWOptions(o.lr).betas({0.9, 0.99}).eps(1e-8);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(opts.weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(opts.weight_decay(0.0)));
  adamw_ = std::make_unique<torch::optim::AdamW>(std::move(groups), opts);
  if (muon)
    muon_ = std::make_unique<Muon>(std::move(matrices),
                                   MuonOptions{o.muon_lr, o.muon_momentum, o.muon_weight_decay, o.muon_ns_steps});
}

void Optimizer::set_rate_factor(double factor) {
  for (auto& g : adamw_->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(adamw_peak_ * factor);
  if (muon_) muon_->set_lr(muon_peak_ * factor);
}

void Optimizer::step() {
  adamw_->step();
  if (muon_) muon_->step();
}

void Optimizer::drop_gradients() {
  for (auto& p : params_) p.mutable_grad().reset();
}

void Optimizer::save_to(Checkpoint& c) const {
  c.optimizer = optimizer_bytes(*adamw_);
  c.muon = muon_ ? module_bytes(muon_->state()) : std::string();
}

void Optimizer::load_from(const Checkpoint& c) {
  if (!c.optimizer.empty()) {
    load_optimizer_bytes(*adamw_, c.optimizer);
    check_optimizer_state(*adamw_);
  }
  if (!c.muon.empty() && !muon_)
    throw CheckpointError("the checkpoint holds Muon's state, but its run uses AdamW alone");
  if (!c.muon.empty()) load_module_bytes(muon_->state(), c.muon, "checkpoint's Muon state", StoredBuffers::kLoaded);
}

double Optimizer::newton_schulz_flops() const {
  if (!muon_) return 0;
  double flops = 0;
  for (const auto& m : muon_->matrices()) {
    const double r = static_cast<double>(m.param.size(0) / m.blocks), c = static_cast<double>(m.param.size(1));
    const double small = std::min(r, c), large = std::max(r, c);
    // per iteration: X·Xᵀ (2·s²·l), A·A (2·s³), B·X (2·s²·l)
    flops += static_cast<double>(m.blocks) * static_cast<double>(ns_steps_) *
             (4.0 * small * small * large + 2.0 * small * small * small);
  }
  return flops;
}

void check_optimizer_state(torch::optim::AdamW& opt) {
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) {
      auto it = opt.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == opt.state().end()) continue;  // a parameter that has not been updated yet
      auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
      const bool ok = st.step() >= 0 && st.exp_avg().defined() && st.exp_avg_sq().defined() &&
                      st.exp_avg().sizes() == p.sizes() && st.exp_avg_sq().sizes() == p.sizes() &&
                      st.exp_avg().scalar_type() == p.scalar_type() && st.exp_avg_sq().scalar_type() == p.scalar_type();
      if (!ok) throw std::invalid_argument("the checkpoint's optimizer state does not fit its model's parameters");
    }
}

}  // namespace dracarys
