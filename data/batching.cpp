#include "data/batching.h"

#include <random>

#include "data/errors.h"

namespace dracarys {

TokenStream tokenize_lines(const Tokenizer& tok, const std::vector<std::string>& lines) {
  TokenStream s;
  const auto& chars = tok.chars_per_token();
  for (const auto& line : lines) {
    for (TokenId id : tok.encode(line)) {
      s.ids.push_back(id);
      s.chars += chars[id];
    }
    s.ids.push_back(tok.eos_id());
    s.chars += chars[tok.eos_id()];
  }
  return s;
}

TrainBatcher::TrainBatcher(std::vector<TokenId> stream, int64_t context, int64_t batch_size, uint64_t seed)
    : stream_(std::move(stream)), context_(context), batch_size_(batch_size), seed_(seed) {
  if (static_cast<int64_t>(stream_.size()) < context_ + 1)
    throw DataError("training text is too small: " + std::to_string(stream_.size()) +
                    " tokens, but one context window needs " + std::to_string(context_ + 1) +
                    "; add text or lower --context");
}

Batch TrainBatcher::batch(int64_t step, int64_t rank) const {
  // A fresh engine per (seed, step): no state to carry across steps or checkpoints.
  std::seed_seq seq{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32), static_cast<uint32_t>(step),
                    static_cast<uint32_t>(step >> 32), 0x64726163u};
  std::mt19937_64 rng(seq);
  // Plain arithmetic on the engine's output (not std::uniform_int_distribution, whose
  // algorithm differs between standard libraries) keeps batches the same everywhere.
  const uint64_t range = stream_.size() - static_cast<uint64_t>(context_);
  for (int64_t skip = 0; skip < rank * batch_size_; ++skip) rng();  // the windows of lower ranks
  auto windows = torch::empty({batch_size_, context_ + 1}, torch::kLong);
  auto* w = windows.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch_size_; ++b) {
    const int64_t s = static_cast<int64_t>(rng() % range);
    for (int64_t t = 0; t <= context_; ++t) w[b * (context_ + 1) + t] = stream_[s + t];
  }
  return {windows.narrow(1, 0, context_), windows.narrow(1, 1, context_), 0.0};
}

std::vector<Batch> eval_batches(const TokenStream& stream, const std::vector<float>& chars_per_token, int64_t context,
                                int64_t batch_size, int64_t max_windows) {
  const int64_t n = static_cast<int64_t>(stream.ids.size());
  // Window w predicts targets w*context+1 .. w*context+len from the tokens just before them.
  std::vector<int64_t> starts;
  for (int64_t s = 0; s + 1 < n && (max_windows <= 0 || static_cast<int64_t>(starts.size()) < max_windows);
       s += context)
    starts.push_back(s);
  auto length = [&](int64_t s) { return std::min(context, n - 1 - s); };
  auto make = [&](size_t first, size_t count) {
    const int64_t L = length(starts[first]);
    Batch b;
    b.inputs = torch::empty({static_cast<int64_t>(count), L}, torch::kLong);
    b.targets = torch::empty({static_cast<int64_t>(count), L}, torch::kLong);
    auto* x = b.inputs.data_ptr<int64_t>();
    auto* y = b.targets.data_ptr<int64_t>();
    for (size_t i = 0; i < count; ++i)
      for (int64_t t = 0; t < L; ++t) {
        const int64_t at = starts[first + i] + t;
        x[i * L + t] = stream.ids[at];
        y[i * L + t] = stream.ids[at + 1];
        b.target_chars += chars_per_token[stream.ids[at + 1]];
      }
    return b;
  };
  // Full windows in batches; a final short window (same-length rows only) in a batch of its own.
  size_t full = starts.size();
  if (full > 0 && length(starts.back()) < context) --full;
  std::vector<Batch> out;
  for (size_t i = 0; i < full; i += batch_size) out.push_back(make(i, std::min<size_t>(batch_size, full - i)));
  if (full < starts.size()) out.push_back(make(full, 1));
  return out;
}

}  // namespace dracarys
