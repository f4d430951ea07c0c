#include "train/distributed.h"

#include "common/option_checks.h"
#include "train/dist_address.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace dracarys {

namespace {
// Gradients are packed into buckets of at most this many floats (32 MB): a few large
// all-reduces per step instead of one per parameter.
constexpr int64_t kBucketFloats = 8 << 20;

std::string error_text(const std::exception& e) {
  std::string s = e.what();
  return s.substr(0, s.find('\n'));
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
class StartupWatchdog {
 public:
  StartupWatchdog(double seconds, std::string message) : message_(std::move(message)) {
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
  }

 private:
  static constexpr int64_t kGraceMs = 2000;  // c10d's own timeouts, when it has them, speak first
  std::string message_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
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
  StartupWatchdog watchdog(opts.timeout_s,
                           cannot_join + (opts.rank == 0 ? ": not every one of the " + std::to_string(opts.world_size) +
                                                               " ranks arrived (start them all with the same "
                                                               "--world-size and --master-port)"
                                                         : ": no answer from rank 0's rendezvous store (is rank 0 "
                                                           "running, or another program listening on that port?)"));
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(opts.master_port);
    so.isServer = opts.rank == 0;
    so.numWorkers = opts.world_size;
    so.waitWorkers = true;
    so.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(opts.master_addr, so);
    auto go = c10d::ProcessGroupGloo::Options::create();
    go->timeout = timeout;
    go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(where.address));
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, opts.rank, opts.world_size, go);
  } catch (const std::exception& e) {
    throw std::runtime_error(cannot_join + ": " + error_text(e));
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

void Distributed::sync_gradients(Transformer& model, bool bad_loss, StepSignals& signals) {
  signals.set_local(bad_loss);
  if (!enabled()) return;
  auto t0 = std::chrono::steady_clock::now();
  auto params = model->parameters();
  // Bucket boundaries: consecutive parameters until a bucket holds kBucketFloats.
  std::vector<std::pair<size_t, size_t>> buckets;
  size_t first = 0;
  int64_t size = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    size += params[i].numel();
    if (size >= kBucketFloats || i + 1 == params.size()) {
      buckets.emplace_back(first, i + 1);
      first = i + 1;
      size = 0;
    }
  }
  bytes_per_step_ = 0;
  for (size_t b = 0; b < buckets.size(); ++b) {
    std::vector<torch::Tensor> flat;
    for (size_t i = buckets[b].first; i < buckets[b].second; ++i) {
      auto& p = params[i];
      flat.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.options()));
    }
    const bool last = b + 1 == buckets.size();
    if (last)
      flat.push_back(torch::tensor({signals.want_stop ? 1.0f : 0.0f, bad_loss ? 1.0f : 0.0f,
                                    is_main() ? static_cast<float>(signals.progress) : 0.0f},
                                   params[0].options()));
    std::vector<torch::Tensor> bucket = {torch::cat(flat)};
    bytes_per_step_ += bucket[0].numel() * static_cast<int64_t>(bucket[0].element_size());
    try {
      impl_->group->allreduce(bucket)->wait();
      ++allreduce_calls_;
    } catch (const std::exception& e) {
      throw std::runtime_error("distributed: all-reduce failed on rank " + std::to_string(opts_.rank) +
                               " (another rank died, hung or lost its connection): " + error_text(e));
    }
    auto& sum = bucket[0];
    int64_t off = 0;
    for (size_t i = buckets[b].first; i < buckets[b].second; ++i) {
      auto& p = params[i];
      auto avg = sum.narrow(0, off, p.numel()).view_as(p) / static_cast<double>(opts_.world_size);
      if (p.grad().defined())
        p.mutable_grad().copy_(avg);
      else
        p.mutable_grad() = avg.clone();
      off += p.numel();
    }
    if (last) {
      signals.any_stop = sum[off].item<float>() > 0;
      signals.any_bad = sum[off + 1].item<float>() > 0;
      signals.main_progress = sum[off + 2].item<float>();
    }
  }
  allreduce_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace dracarys
