// Continuous batching: one thread runs the model for every active request at once. Each step,
// every request's newest token goes through TransformerImpl::decode_batch together, so each
// weight is read once for all of them; each request keeps its own KV cache, sampler and
// bookkeeping (engine/completion.h), and gets exactly the tokens it would get alone. A request
// joins at the next step (its prompt read first, alone) and leaves when it is done, as
// llama-server's slots do.
//
// The HTTP threads never run the model: they hand a request in, then wait for its pieces and
// write them to their client. A client that is gone marks its request cancelled, and the batch
// drops it at the next step.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/completion.h"

namespace dracarys {

class Batcher {
 public:
  // `lanes` threads each run a batch of their own (one per core: a thread that computes alone
  // never waits for another); at most `max_batch` requests are computed at once in all, the
  // others wait their turn.
  Batcher(LoadedModel& model, int max_batch, int lanes);
  ~Batcher();  // finishes nothing: call stop() first to end the requests in flight

  // Runs one completion in the batch and blocks until it is done. on_piece runs on the calling
  // thread, as the pieces come; returning false cancels the request.
  CompletionResult complete(std::vector<TokenId> prompt, const CompletionOptions& options, const OnPiece& on_piece);

  // Ends every request at its next step (cancelled) and stops the thread.
  void stop();

  // For /metrics: batched steps taken, the tokens they made, the largest batch so far.
  struct Stats {
    int64_t steps = 0, tokens = 0, largest = 0;
  };
  Stats stats() const;

 private:
  struct Job;
  void run();                                                    // one lane's thread
  void admit(std::vector<std::shared_ptr<Job>>& active);         // the waiting, up to max_batch
  void start(Job& job);                                          // the prompt through the model, alone
  void step(std::vector<std::shared_ptr<Job>>& active);          // one token of every active request
  static bool take(Job& job, const std::vector<float>& logits);  // picks and books one token

  LoadedModel& m_;
  const int max_batch_;  // in each lane
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> waiting_;
  bool stopping_ = false;
  Stats stats_;
  std::vector<std::thread> lanes_;
};

}  // namespace dracarys
