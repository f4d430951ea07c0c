#include "model/systems/cpu_threads.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace dracarys {

namespace {

void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// The caller and `helpers` threads that run one job at a time. A job is cut into parts (a few
// per thread); each thread claims parts until none is left, so a helper that the system has
// paused, or that is asleep, holds no one up: the caller takes its parts. A job comes every
// few microseconds while a token is generated, too often to wake sleeping threads for each:
// between jobs a helper spins for a while, then sleeps until woken.
class Team {
 public:
  explicit Team(int helpers) : claimed_(static_cast<size_t>(kPartsPerThread * (helpers + 1))) {
    for (int h = 0; h < helpers; ++h) helpers_.emplace_back([this] { serve(); });
  }
  ~Team() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      epoch_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : helpers_) t.join();
  }
  int size() const { return static_cast<int>(helpers_.size()) + 1; }
  int parts() const { return static_cast<int>(claimed_.size()); }

  // Runs work(part) once for every part in [0, parts()); returns when all are done.
  void run(const std::function<void(int)>& work) {
    job_ = &work;
    done_.store(0, std::memory_order_relaxed);
    uint64_t epoch;
    bool sleeping;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      epoch = epoch_.fetch_add(1, std::memory_order_release) + 1;
      sleeping = sleepers_ > 0;
    }
    if (sleeping) wake_.notify_all();
    claim_and_run(epoch, /*caller=*/true);
    while (done_.load(std::memory_order_acquire) != parts()) spin_pause();
  }

 private:
  static constexpr int kPartsPerThread = 4;
  static constexpr auto kSpin = std::chrono::microseconds(100);  // then sleep

  // Claims and runs parts of job `epoch` until none is left. A part is claimed by moving its
  // counter from the previous job's number to this one's, so each part runs once per job and a
  // late thread (still holding an older job's number) claims nothing.
  // The caller goes up from the first part, the helpers down from the last, so that they meet
  // once, in the middle.
  void claim_and_run(uint64_t epoch, bool caller) {
    const int n = parts();
    for (int i = 0; i < n; ++i) {
      const int part = caller ? i : n - 1 - i;
      uint64_t expected = epoch - 1;
      if (!claimed_[static_cast<size_t>(part)].value.compare_exchange_strong(expected, epoch,
                                                                             std::memory_order_acq_rel))
        continue;
      (*job_)(part);
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void serve() {
    uint64_t seen = 0;
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      uint64_t epoch;
      for (int i = 0; (epoch = epoch_.load(std::memory_order_acquire)) == seen; ++i) {
        spin_pause();
        if (i % 256 == 255 && std::chrono::steady_clock::now() > until) {
          std::unique_lock<std::mutex> lock(mutex_);
          ++sleepers_;
          wake_.wait(lock, [&] { return epoch_.load(std::memory_order_acquire) != seen; });
          --sleepers_;
        }
      }
      seen = epoch;
      if (stop_) return;
      claim_and_run(epoch, /*caller=*/false);
    }
  }

  std::vector<std::thread> helpers_;
  struct alignas(64) Claim {  // one per cache line: threads claiming different parts do not collide
    std::atomic<uint64_t> value{0};
  };
  std::vector<Claim> claimed_;  // per part: the number of the last job that claimed it
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> epoch_{0};  // the current job's number, one more per job
  std::atomic<int> done_{0};        // parts of the current job finished
  std::mutex mutex_;                // guards sleepers_ and stop_, and orders a job against a helper going to sleep
  std::condition_variable wake_;
  int sleepers_ = 0;
  bool stop_ = false;
};

std::unique_ptr<Team> g_team;  // null: the caller alone
std::mutex g_team_busy;        // one job at a time; a second caller (another request) works alone

}  // namespace

void set_cpu_threads(int threads) { g_team = threads > 1 ? std::make_unique<Team>(threads - 1) : nullptr; }

int cpu_threads() { return g_team ? g_team->size() : 1; }

void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& work) {
  std::unique_lock<std::mutex> busy(g_team_busy, std::defer_lock);
  if (!g_team || n < 2 || !busy.try_lock()) return work(0, n);
  const int parts = g_team->parts();
  g_team->run([&](int part) {
    const int64_t begin = n * part / parts, end = n * (part + 1) / parts;
    if (begin < end) work(begin, end);
  });
}

}  // namespace dracarys
