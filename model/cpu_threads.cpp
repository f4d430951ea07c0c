#include "model/cpu_threads.h"

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

// The caller and `helpers` threads that run one job at a time, each its own part. A job comes
// every few microseconds while a token is generated, too often to wake sleeping threads for
// each: between jobs a helper spins for a while, then sleeps until the next one.
class Team {
 public:
  explicit Team(int helpers) {
    for (int part = 1; part <= helpers; ++part) helpers_.emplace_back([this, part] { serve(part); });
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

  // Runs work(part) for every part in [0, size()), part 0 on the calling thread; returns when
  // all parts are done.
  void run(const std::function<void(int)>& work) {
    job_ = &work;
    pending_.store(static_cast<int>(helpers_.size()), std::memory_order_relaxed);
    bool sleeping;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      epoch_.fetch_add(1, std::memory_order_release);
      sleeping = sleepers_ > 0;
    }
    if (sleeping) wake_.notify_all();
    work(0);
    while (pending_.load(std::memory_order_acquire) != 0) spin_pause();
  }

 private:
  static constexpr auto kSpin = std::chrono::microseconds(100);  // then sleep

  void serve(int part) {
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
      (*job_)(part);
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::vector<std::thread> helpers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> epoch_{0};  // one more per job
  std::atomic<int> pending_{0};     // helpers still working on the current job
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
  const int parts = g_team->size();
  g_team->run([&](int part) {
    const int64_t begin = n * part / parts, end = n * (part + 1) / parts;
    if (begin < end) work(begin, end);
  });
}

}  // namespace dracarys
