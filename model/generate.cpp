#include "model/generate.h"

#include <chrono>
#include <stdexcept>

namespace dracarys {

namespace {

using Clock = std::chrono::steady_clock;

// Logits of the last position ([B, T, vocab] from forward(), or [vocab] from decode_one), as
// floats on the host for the sampler.
std::vector<float> last_logits(const torch::Tensor& logits) {
  auto row = logits.dim() == 1 ? logits : logits.select(0, 0).select(0, logits.size(1) - 1);
  row = row.to(torch::kCPU, torch::kFloat).contiguous();
  return std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
}

}  // namespace

std::vector<int64_t> last_context(std::vector<int64_t> ids, int64_t context) {
  if (static_cast<int64_t>(ids.size()) > context) ids.erase(ids.begin(), ids.end() - context);
  return ids;
}

std::vector<int64_t> generate(Transformer& model, std::vector<int64_t> prompt, const GenerateOptions& opts,
                              const std::function<bool(int64_t)>& on_token, GenerateStats* stats) {
  if (prompt.empty()) throw std::invalid_argument("generate: the prompt has no tokens");
  torch::NoGradGuard no_grad;
  if (model->is_training()) model->eval();  // (a loaded model already is: then nothing changes it)
  const int64_t context = model->config().context;
  const auto device = model->head_weight().device();
  Sampler sampler(opts.sampling);
  GenerateStats local;
  GenerateStats& st = stats ? *stats : local;
  st = GenerateStats{};
  st.prompt_truncated = static_cast<int64_t>(prompt.size()) > context;
  prompt = last_context(std::move(prompt), context);
  st.prompt_tokens = static_cast<int64_t>(prompt.size());
  sampler.remember(prompt);  // the penalties look at the prompt too

  std::vector<int64_t> seq = prompt;  // everything the model has seen or made, for the sliding window
  std::vector<int64_t> out;
  KVCache cache = model->make_cache();

  auto t0 = Clock::now();
  // Prefill: the whole prompt in one forward pass (it fills the cache when caching).
  auto logits = opts.use_cache ? model->forward(one_sequence(prompt, device), &cache)
                               : model->forward(one_sequence(prompt, device));
  auto t1 = Clock::now();
  st.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();

  for (int64_t i = 0; i < opts.max_new_tokens; ++i) {
    auto row = last_logits(logits);  // [vocab]
    if (opts.on_logits) opts.on_logits(row);
    if (opts.mask_logits) opts.mask_logits(row);
    const int64_t id = sampler.next(row);
    out.push_back(id);
    seq.push_back(id);
    ++st.generated_tokens;
    if (on_token && !on_token(id)) break;
    if (opts.stop_token && id == *opts.stop_token) break;
    if (i + 1 == opts.max_new_tokens) break;

    if (!opts.use_cache) {  // recompute the last `context` tokens from scratch
      const int64_t n = std::min<int64_t>(context, static_cast<int64_t>(seq.size()));
      logits = model->forward(one_sequence(std::vector<int64_t>(seq.end() - n, seq.end()), device));
    } else if (cache.length() < context) {  // one new position through the cache
      logits = model->decode_one(id, cache);
    } else {  // cache full: restart it from the most recent half of the context
      const int64_t keep = std::max<int64_t>(1, context / 2);
      cache = model->make_cache();
      logits = model->forward(one_sequence(std::vector<int64_t>(seq.end() - keep, seq.end()), device), &cache);
    }
  }
  st.generate_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return out;
}

}  // namespace dracarys
