#include "serve/batcher.h"

#include <algorithm>
#include <atomic>
#include <chrono>

namespace dracarys {

using Clock = std::chrono::steady_clock;

namespace {
double seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}
}  // namespace

// One request in the batch. The model's thread owns the middle part; the pieces, the end and
// the cancellation are shared with the caller's thread under `mutex`.
struct Batcher::Job {
  Job(const Tokenizer& tokenizer, std::vector<TokenId> prompt_ids, const CompletionOptions& o)
      : prompt(std::move(prompt_ids)),
        options(o),
        sampler(o.sampling),
        tracker(tokenizer, o, [this](const CompletionPiece& p) { return hand_on(p); }) {}

  std::vector<TokenId> prompt;
  CompletionOptions options;

  // The model's thread's: generate()'s loop, one request at a time.
  Sampler sampler;
  CompletionTracker tracker;
  KVCache cache;
  std::vector<TokenId> seq;  // what the model has seen and made, for the window's slide
  TokenId next = -1;         // the token to feed at the next step
  int64_t made = 0;          // tokens picked
  Clock::time_point started, prefilled;

  // Shared with the caller.
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<CompletionPiece> pieces;
  bool finished = false;
  std::atomic<bool> cancelled{false};

  bool hand_on(const CompletionPiece& p) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      pieces.push_back(p);
    }
    ready.notify_one();
    return !cancelled;
  }
  void finish() {
    tracker.finish();
    auto& st = tracker.result().stats;
    st.generate_seconds = seconds(prefilled, Clock::now());
    {
      std::lock_guard<std::mutex> lock(mutex);
      finished = true;
    }
    ready.notify_one();
  }
};

Batcher::Batcher(LoadedModel& model, int max_batch, int lanes)
    : m_(model), max_batch_(std::max(1, (max_batch + lanes - 1) / lanes)) {
  for (int i = 0; i < lanes; ++i) lanes_.emplace_back([this] { run(); });
}

Batcher::~Batcher() {
  stop();
  for (auto& lane : lanes_)
    if (lane.joinable()) lane.join();
}

void Batcher::stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = true;
  wake_.notify_all();
}

Batcher::Stats Batcher::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

CompletionResult Batcher::complete(std::vector<TokenId> prompt, const CompletionOptions& options,
                                   const OnPiece& on_piece) {
  auto job = std::make_shared<Job>(m_.tokenizer, std::move(prompt), options);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {  // the model's thread is gone
      CompletionResult none;
      none.cancelled = true;
      return none;
    }
    waiting_.push_back(job);
  }
  wake_.notify_one();
  // Hand the pieces on as they come, here, on the caller's thread.
  std::unique_lock<std::mutex> lock(job->mutex);
  for (;;) {
    job->ready.wait(lock, [&] { return !job->pieces.empty() || job->finished; });
    while (!job->pieces.empty()) {
      CompletionPiece piece = std::move(job->pieces.front());
      job->pieces.pop_front();
      lock.unlock();
      if (!job->cancelled && on_piece && !on_piece(piece)) job->cancelled = true;
      lock.lock();
    }
    if (job->finished) break;
  }
  auto result = std::move(job->tracker.result());
  if (job->cancelled) result.cancelled = true;
  return result;
}

void Batcher::run() {
  std::vector<std::shared_ptr<Job>> active;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !active.empty(); });
      if (stopping_) {
        for (auto& job : waiting_) active.push_back(job);
        waiting_.clear();
        for (auto& job : active) job->cancelled = true, job->finish();
        return;
      }
    }
    admit(active);
    step(active);
  }
}

// The waiting requests join, up to max_batch, each reading its prompt alone first.
void Batcher::admit(std::vector<std::shared_ptr<Job>>& active) {
  std::vector<std::shared_ptr<Job>> joining;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!waiting_.empty() && static_cast<int>(active.size() + joining.size()) < max_batch_) {
      joining.push_back(waiting_.front());
      waiting_.pop_front();
    }
  }
  for (auto& job : joining) {
    start(*job);
    if (job->next >= 0)
      active.push_back(job);
    else
      job->finish();
  }
}

// The prompt in one forward pass, as generate() reads it, then the first token.
void Batcher::start(Job& job) {
  torch::NoGradGuard no_grad;
  auto& r = job.tracker.result();
  const int64_t context = m_.model->config().context;
  job.started = Clock::now();
  r.stats.prompt_truncated = static_cast<int64_t>(job.prompt.size()) > context;
  r.prompt_ids = last_context(std::move(job.prompt), context);
  r.stats.prompt_tokens = static_cast<int64_t>(r.prompt_ids.size());
  job.seq = r.prompt_ids;
  job.sampler.remember(r.prompt_ids);
  job.prefilled = Clock::now();
  if (job.options.max_new_tokens <= 0 || job.cancelled) return;
  job.cache = m_.model->make_cache();
  auto logits = m_.model->forward(one_sequence(r.prompt_ids, m_.model->head_weight().device()), &job.cache);
  job.prefilled = Clock::now();
  r.stats.prompt_seconds = seconds(job.started, job.prefilled);
  const auto row = logits[0][-1].to(torch::kCPU, torch::kFloat).contiguous();
  take(job, std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel()));
}

// One token picked from `logits` and booked; job.next is the token to feed, or -1 when done.
bool Batcher::take(Job& job, const std::vector<float>& logits) {
  job.tracker.see_logits(logits);
  const TokenId id = job.sampler.next(logits);
  ++job.made;
  job.seq.push_back(id);
  ++job.tracker.result().stats.generated_tokens;
  const bool more = job.tracker.take(id) && !job.cancelled && job.made < job.options.max_new_tokens;
  job.next = more ? id : -1;
  return more;
}

// Every active request's next token through the model at once; a request whose cache is full
// restarts it from the most recent half of its context, alone, as generate() does.
void Batcher::step(std::vector<std::shared_ptr<Job>>& active) {
  torch::NoGradGuard no_grad;
  const int64_t context = m_.model->config().context;
  std::vector<Job*> batch;
  std::vector<int64_t> tokens;
  std::vector<KVCache*> caches;
  for (auto& job : active) {
    if (job->cancelled) {
      job->next = -1;
      continue;
    }
    if (job->cache.length() < context) {
      batch.push_back(job.get()), tokens.push_back(job->next), caches.push_back(&job->cache);
      continue;
    }
    const int64_t keep = std::max<int64_t>(1, context / 2);
    job->cache = m_.model->make_cache();
    auto logits = m_.model->forward(
        one_sequence(std::vector<int64_t>(job->seq.end() - keep, job->seq.end()), m_.model->head_weight().device()),
        &job->cache);
    const auto row = logits[0][-1].to(torch::kCPU, torch::kFloat).contiguous();
    take(*job, std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel()));
  }
  if (!batch.empty()) {
    const auto logits = m_.model->decode_batch(tokens, caches.data()).to(torch::kCPU, torch::kFloat).contiguous();
    const float* rows = logits.data_ptr<float>();
    const int64_t vocab = logits.size(1);
    for (size_t b = 0; b < batch.size(); ++b)
      take(*batch[b], std::vector<float>(rows + b * vocab, rows + (b + 1) * vocab));
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.steps;
    stats_.tokens += static_cast<int64_t>(batch.size());
    stats_.largest = std::max(stats_.largest, static_cast<int64_t>(batch.size()));
  }
  // The requests that are done leave.
  for (auto it = active.begin(); it != active.end();) {
    if ((*it)->next < 0) {
      (*it)->finish();
      it = active.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace dracarys
