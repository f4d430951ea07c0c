#include "train/distributed.h"

#include "cli/option_checks.h"
#include "train/dist_address.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace dracarys {

namespace {
constexpr int64_t kSignals = 3;  // want stop, bad loss, rank 0's schedule position
using Clock = std::chrono::steady_clock;

std::string error_text(const std::exception& e) {
  std::string s = e.what();
  return s.substr(0, s.find('\n'));
}

constexpr const char* kNotAStore = "the peer on that port does not speak c10d's store protocol";

// Why joining failed, in our words where c10d's or Gloo's own are a library's internals (an
// "[enforce fail at ...]" or a protocol complaint: what a port that is not a store gets back).
std::string join_failure(const std::exception& e) {
  const std::string text = error_text(e);
  for (const char* internal : {"enforce fail", "response is expected", "unordered_map", "bad_alloc", "out_of_range"})
    if (text.find(internal) != std::string::npos) return kNotAStore;
  return text;
}
}  // namespace

void DistOptions::validate() const {
  require_count("--world-size", world_size, 1, 4096);
  require_count("--rank", rank, 0, world_size - 1);
  require_count("--master-port", master_port, 1, 65535);
  require_number("--dist-timeout", timeout_s, 0.0, 24 * 3600.0, /*above_lo=*/true);
  if (master_addr.empty()) throw std::invalid_argument("--master-addr is empty");
}

namespace {

// Some waits inside c10d have no timeout of their own (a client's handshake with a port that
// accepts but never answers waits forever). While a phase of start-up runs, this ends the
// process with one clear line once --dist-timeout (and a moment's grace) has passed.
//
// It also catches what c10d throws on a thread of its own (the store client's, where a peer that
// is not a c10d store can make it throw std::bad_alloc): std::terminate then prints this phase's
// message, in our words, and exits 1 instead of aborting.
class StartupWatchdog {
 public:
  StartupWatchdog(double seconds, std::string message) : message_(std::move(message)) {
    current_message_ = &message_;
    previous_terminate_ = std::set_terminate([] {
      spdlog::error("{}: {}", *current_message_.load(), kNotAStore);
      std::_Exit(1);
    });
    thread_ = std::thread([this, seconds] {
      std::unique_lock<std::mutex> lock(mutex_);
      const auto limit = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000) + kGraceMs);
      if (!done_cv_.wait_for(lock, limit, [this] { return done_; })) {
        spdlog::error("{}", message_);
        std::_Exit(1);
      }
    });
  }
  ~StartupWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    done_cv_.notify_all();
    thread_.join();
    std::set_terminate(previous_terminate_);
  }

 private:
  static inline std::atomic<const std::string*> current_message_{nullptr};
  std::terminate_handler previous_terminate_ = nullptr;
  static constexpr int64_t kGraceMs = 2000;  // c10d's own timeouts, when it has them, speak first
  std::string message_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

// The rendezvous store: rank 0 hosts it and waits for the others; or, under torchrun's agent,
// every rank joins the agent's as a client, with this attempt's prefix (as PyTorch's own
// workers do, torch/distributed/rendezvous.py), so a restarted group never reads the keys of
// the attempt before it.
c10::intrusive_ptr<c10d::Store> join_store(const DistOptions& opts, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(opts.master_port);
  so.timeout = timeout;
  if (opts.agent_store) {
    so.waitWorkers = false;  // the process group's own exchange waits for every rank
    auto agents = c10::make_intrusive<c10d::TCPStore>(opts.master_addr, so);
    return c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(opts.restart_count), agents);
  }
  so.isServer = opts.rank == 0;
  so.numWorkers = opts.world_size;
  so.waitWorkers = true;
  return c10::make_intrusive<c10d::TCPStore>(opts.master_addr, so);
}

}  // namespace

// The gradients' buckets and the all-reduces in flight (see attach()).
struct GradientBuckets {
  std::vector<torch::Tensor> params;         // the model's parameters, in their order
  std::vector<size_t> bucket_of, offset;     // per parameter: its bucket, its first float there
  std::vector<std::vector<size_t>> members;  // per bucket: its parameters
  std::vector<torch::Tensor> flat;           // per bucket: the packed gradients (+ signals in the last)
  bool overlap = true;                       // launch each bucket as soon as it is full, during the backward pass
  bool armed = false;                        // between begin_gradient_sync() and finish_gradient_sync()
  std::vector<size_t> pending;               // per bucket: gradients still to come
  std::vector<bool> seen;                    // per parameter: packed this step
  std::vector<c10::intrusive_ptr<c10d::Work>> work;
  size_t next_launch = 0;
  std::array<float, 3> signals{};  // want stop, bad loss, rank 0's schedule position
};

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  GradientBuckets grads;
};

Distributed::Distributed(const DistOptions& opts) : opts_(opts) {
  opts.validate();
  if (!enabled()) return;
  impl_ = std::make_unique<Impl>();
  // Before any waiting: a rank that would advertise an address its peers cannot reach fails now.
  const DistAddressChoice where =
      choose_dist_address(opts.master_addr, opts.master_port, opts.interface, std::getenv("GLOO_SOCKET_IFNAME"));
  spdlog::info("rank {}: all-reduce over {} (chosen by {})", opts.rank, where.address, where.reason);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(opts.timeout_s * 1000));
  const std::string cannot_join = "rank " + std::to_string(opts.rank) + " could not join the process group at " +
                                  opts.master_addr + ":" + std::to_string(opts.master_port) + " within " +
                                  std::to_string(static_cast<int>(opts.timeout_s)) + "s";
  StartupWatchdog watchdog(
      opts.timeout_s,
      cannot_join + (opts.rank == 0 && !opts.agent_store ? ": not every one of the " + std::to_string(opts.world_size) +
                                                               " ranks arrived (start them all with the same "
                                                               "--world-size and --master-port)"
                     : opts.agent_store ? ": not every rank joined torchrun's rendezvous store"
                                        : ": no answer from rank 0's rendezvous store (is rank 0 "
                                          "running, or another program listening on that port?)"));
  try {
    impl_->store = join_store(opts, timeout);
    auto go = c10d::ProcessGroupGloo::Options::create();
    go->timeout = timeout;
    go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(where.address));
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, opts.rank, opts.world_size, go);
  } catch (const std::exception& e) {  // (std::bad_alloc's text names it: join_failure words it)
    throw std::runtime_error(cannot_join + ": " + join_failure(e));
  }
}

Distributed::~Distributed() = default;

void Distributed::require_same(const std::string& key, const std::string& value) {
  if (!enabled()) return;
  try {
    impl_->store->set("dracarys/" + key + "/" + std::to_string(opts_.rank),
                      std::vector<uint8_t>(value.begin(), value.end()));
    for (int r = 0; r < opts_.world_size; ++r) {
      auto got = impl_->store->get("dracarys/" + key + "/" + std::to_string(r));
      if (std::string(got.begin(), got.end()) != value)
        throw std::invalid_argument("rank " + std::to_string(r) + " was started with a different " + key +
                                    " than rank " + std::to_string(opts_.rank) +
                                    "; start every rank with the same options");
    }
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error("distributed: cannot compare " + key + " across ranks: " + error_text(e));
  }
}

std::string Distributed::share_from_main(const std::string& key, const std::string& value) {
  if (!enabled()) return value;
  try {
    if (is_main()) impl_->store->set("dracarys/" + key, std::vector<uint8_t>(value.begin(), value.end()));
    auto got = impl_->store->get("dracarys/" + key);
    return std::string(got.begin(), got.end());
  } catch (const std::exception& e) {
    throw std::runtime_error("distributed: cannot receive " + key + " from rank 0: " + error_text(e));
  }
}

void Distributed::broadcast_parameters(Transformer& model) {
  if (!enabled()) return;
  torch::NoGradGuard no_grad;
  auto params = model->parameters();
  std::vector<torch::Tensor> flat;
  for (auto& p : params) flat.push_back(p.detach().reshape({-1}));
  std::vector<torch::Tensor> buf = {torch::cat(flat)};
  try {
    impl_->group->broadcast(buf)->wait();
  } catch (const std::exception& e) {
    throw std::runtime_error("distributed: broadcasting the initial weights failed: " + error_text(e));
  }
  int64_t off = 0;
  for (auto& p : params) {
    p.copy_(buf[0].narrow(0, off, p.numel()).view_as(p));
    off += p.numel();
  }
}

double Distributed::sum_across_ranks(double value) {
  if (!enabled()) return value;
  std::vector<torch::Tensor> buf = {torch::tensor({value}, torch::kDouble)};
  try {
    impl_->group->allreduce(buf)->wait();
  } catch (const std::exception& e) {
    throw std::runtime_error("distributed: summing a figure across ranks failed: " + error_text(e));
  }
  return buf[0].item<double>();
}

void Distributed::attach(Transformer& model, bool overlap) {
  if (!enabled()) return;
  auto& g = impl_->grads;
  g.params = model->parameters();
  g.overlap = overlap;
  // Buckets of about --bucket-mb (1 MB), in reverse order of the parameters, as the backward
  // pass produces their gradients: bucket 0 holds the last parameters (the top blocks), the last
  // bucket the embedding and the three signals. A few all-reduces per step instead of one per
  // parameter, the first starting early in the backward pass (docs/distributed.md measures 1, 4, 16).
  const auto bucket_floats = static_cast<int64_t>(opts_.bucket_mb * 1e6 / sizeof(float));
  const size_t n = g.params.size();
  g.bucket_of.assign(n, 0);
  g.offset.assign(n, 0);
  std::vector<size_t> current;
  int64_t size = 0;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = n - 1 - k;
    g.bucket_of[i] = g.members.size();
    g.offset[i] = size;
    current.push_back(i);
    size += g.params[i].numel();
    if (size >= bucket_floats || k + 1 == n) {
      g.members.push_back(current);
      g.flat.push_back(torch::zeros({size + (k + 1 == n ? kSignals : 0)}, g.params[i].options()));
      current.clear();
      size = 0;
    }
  }
  bytes_per_step_ = 0;
  for (const auto& f : g.flat) bytes_per_step_ += f.numel() * static_cast<int64_t>(f.element_size());
  for (size_t i = 0; i < n; ++i)
    g.params[i].register_hook([this, i](const torch::Tensor& grad) { on_gradient(i, grad); });
}

void Distributed::begin_gradient_sync(bool bad_loss, const StepSignals& signals) {
  if (!enabled()) return;
  auto& g = impl_->grads;
  g.armed = true;
  g.signals = {signals.want_stop ? 1.0f : 0.0f, bad_loss ? 1.0f : 0.0f,
               is_main() ? static_cast<float>(signals.progress) : 0.0f};
  g.pending.assign(g.members.size(), 0);
  for (size_t b = 0; b < g.members.size(); ++b) g.pending[b] = g.members[b].size();
  g.seen.assign(g.params.size(), false);
  g.work.assign(g.members.size(), c10::intrusive_ptr<c10d::Work>());
  g.next_launch = 0;
}

// A parameter's gradient of the last backward pass is ready (before autograd adds it to .grad).
void Distributed::on_gradient(size_t i, const torch::Tensor& grad) {
  auto& g = impl_->grads;
  if (!g.armed || g.seen[i]) return;
  g.seen[i] = true;
  auto& p = g.params[i];
  auto slot = g.flat[g.bucket_of[i]].narrow(0, g.offset[i], p.numel());
  // With accumulation, .grad holds the earlier micro-batches: pack the sum autograd will store.
  if (p.grad().defined())
    slot.copy_((p.grad() + grad).reshape({-1}));
  else
    slot.copy_(grad.reshape({-1}));
  --g.pending[g.bucket_of[i]];
  if (g.overlap) launch_ready_buckets();
}

// Starts the all-reduce of each bucket whose gradients are all packed, strictly in bucket order
// (every rank must issue the same collectives in the same order).
void Distributed::launch_ready_buckets() {
  auto& g = impl_->grads;
  while (g.next_launch < g.members.size() && g.pending[g.next_launch] == 0) {
    const size_t b = g.next_launch++;
    if (b + 1 == g.members.size())
      for (int64_t k = 0; k < kSignals; ++k) g.flat[b][g.flat[b].numel() - kSignals + k] = g.signals[k];
    std::vector<torch::Tensor> bucket = {g.flat[b]};
    try {
      g.work[b] = impl_->group->allreduce(bucket);
    } catch (const std::exception& e) {
      throw std::runtime_error("distributed: all-reduce failed on rank " + std::to_string(opts_.rank) + ": " +
                               error_text(e));
    }
  }
}

void Distributed::finish_gradient_sync(StepSignals& signals) {
  if (!enabled()) return;
  auto& g = impl_->grads;
  const auto waiting_since = Clock::now();  // what the all-reduce adds to the step starts here
  // A parameter that got no gradient this step contributes zeros (or what it accumulated).
  for (size_t i = 0; i < g.params.size(); ++i)
    if (!g.seen[i]) {
      auto slot = g.flat[g.bucket_of[i]].narrow(0, g.offset[i], g.params[i].numel());
      if (g.params[i].grad().defined())
        slot.copy_(g.params[i].grad().reshape({-1}));
      else
        slot.zero_();
      g.seen[i] = true;
      --g.pending[g.bucket_of[i]];
    }
  launch_ready_buckets();
  for (size_t b = 0; b < g.members.size(); ++b) {
    try {
      g.work[b]->wait();
      ++allreduce_calls_;
    } catch (const std::exception& e) {
      throw std::runtime_error("distributed: all-reduce failed on rank " + std::to_string(opts_.rank) +
                               " (another rank died, hung or lost its connection): " + error_text(e));
    }
    for (size_t i : g.members[b]) {
      auto& p = g.params[i];
      auto avg = g.flat[b].narrow(0, g.offset[i], p.numel()).view_as(p) / static_cast<double>(opts_.world_size);
      if (p.grad().defined())
        p.mutable_grad().copy_(avg);
      else
        p.mutable_grad() = avg.clone();
    }
  }
  const auto& tail = g.flat.back();
  const int64_t at = tail.numel() - kSignals;
  signals.any_stop = tail[at].item<float>() > 0;
  signals.any_bad = tail[at + 1].item<float>() > 0;
  signals.main_progress = tail[at + 2].item<float>();
  g.armed = false;
  allreduce_s_ += std::chrono::duration<double>(Clock::now() - waiting_since).count();
}

}  // namespace dracarys
