// Data-parallel training over LibTorch's c10d: a TCPStore for rendezvous and a Gloo process
// group (on CPU) for collectives. With world size 1 nothing here is created or called.
//
// Every step each rank computes gradients on its own slice of the global batch; the gradients
// are averaged with an all-reduce over flat buckets of about 1 MB (--bucket-mb), each started during the
// backward pass as soon as its gradients are ready, so every rank applies the same update and
// holds the same weights. Three extra numbers ride along in the last bucket:
// "some rank wants to stop" (Ctrl-C, time budget), "some rank saw a non-finite loss", and
// rank 0's schedule position, so all ranks stop at the same step and use the same learning rate.
#pragma once

#include <memory>
#include <string>

#include "model/transformer.h"

namespace dracarys {

struct DistOptions {
  int world_size = 1;
  int rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double bucket_mb = 1;    // gradient buckets' size: the first all-reduce starts once this much is ready
  double timeout_s = 120;  // a rank that dies or never connects fails the others after this
  std::string interface;   // network interface for the all-reduce; empty: see train/dist_address.h
  // torchrun's agent already hosts the store at master_addr:master_port (train/launch_env.h):
  // every rank, rank 0 too, joins it as a client under "/worker/attempt_<restart_count>".
  bool agent_store = false;
  int restart_count = 0;
  std::string launcher = "the command line";  // who set the rank's variables (train/launch_env.h), for the log

  void validate() const;  // throws std::invalid_argument naming the option
};

// What rides along with the gradients in the last bucket.
struct StepSignals {
  bool want_stop = false;    // in: this rank wants to stop after this step
  double progress = 0;       // in: this rank's schedule position (only rank 0's is used)
  bool any_stop = false;     // out: some rank wants to stop
  bool any_bad = false;      // out: some rank's loss was not finite
  double main_progress = 0;  // out: rank 0's schedule position, the same on every rank

  // The outputs as a single process sees them: its own wishes and position.
  void set_local(bool bad_loss) {
    any_stop = want_stop;
    any_bad = bad_loss;
    main_progress = progress;
  }
};

class Distributed {
 public:
  explicit Distributed(const DistOptions& opts);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  bool enabled() const { return opts_.world_size > 1; }
  int rank() const { return opts_.rank; }
  int world_size() const { return opts_.world_size; }
  bool is_main() const { return opts_.rank == 0; }

  // Every rank publishes `value` under `key`; throws if any rank's differs from this one's.
  void require_same(const std::string& key, const std::string& value);
  // Rank 0 publishes `value`; the others receive it.
  std::string share_from_main(const std::string& key, const std::string& value);
  // The sum of every rank's `value` (its own value when not distributed).
  double sum_across_ranks(double value);
  // Copies rank 0's parameters to every rank.
  void broadcast_parameters(Transformer& model);
  // Gradient averaging, in three calls around the backward pass that produces the step's
  // gradients (the last micro-batch's, with accumulation):
  //   attach(model)              once: buckets of parameters in reverse order, a hook on each
  //   begin_gradient_sync(...)   before that backward pass: arms the hooks with this rank's signals
  //   finish_gradient_sync(...)  after it: waits for every bucket, writes the averaged gradients
  // With `overlap`, a bucket's all-reduce starts as soon as its last gradient is ready, behind
  // the rest of the backward pass; without, all start after it. The sums are the same.
  void attach(Transformer& model, bool overlap);
  void begin_gradient_sync(bool bad_loss, const StepSignals& signals);
  void finish_gradient_sync(StepSignals& signals);

  // Total so far of the time finish_gradient_sync() waited: what the all-reduce added to the steps.
  double allreduce_seconds() const { return allreduce_s_; }
  int64_t allreduce_calls() const { return allreduce_calls_; }
  int64_t bytes_per_step() const { return bytes_per_step_; }

 private:
  void on_gradient(size_t index, const torch::Tensor& grad);
  void launch_ready_buckets();

  struct Impl;
  DistOptions opts_;
  std::unique_ptr<Impl> impl_;
  double allreduce_s_ = 0;
  int64_t allreduce_calls_ = 0;
  int64_t bytes_per_step_ = 0;
};

}  // namespace dracarys
