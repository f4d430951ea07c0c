#include "model/decode_kernels.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

// On x86-64 each function below is compiled twice, for x86-64-v3 (AVX2 with FMA) and for the baseline, and
// the loader picks the one this CPU runs (GCC's and Clang's target_clones). The loops are
// written so the compiler turns them into vector instructions: fixed-width groups of
// independent sums, no branches inside.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_ADDRESS__)
#define DRACARYS_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DRACARYS_VECTOR_CLONES
#endif

namespace dracarys::kernels {

namespace {

constexpr int kLanes = 16;  // partial sums kept apart: two 8-float vector registers

// a·b over n floats. Always the same order of additions, so the same inputs give the same bits.
inline float dot(const float* a, const float* b, int64_t n) {
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) partial[j] += a[i + j] * b[i + j];
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (int j = 0; j < kLanes; ++j) sum += partial[j];
  return sum;
}

// Rows [begin, end) of y = W·x + b.
DRACARYS_VECTOR_CLONES
void matvec_rows(const float* W, const float* b, const float* x, float* y, int64_t begin, int64_t end, int64_t cols) {
  for (int64_t r = begin; r < end; ++r) y[r] = dot(W + r * cols, x, cols) + (b ? b[r] : 0.0f);
}

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
  static constexpr auto kSpin = std::chrono::microseconds(500);  // then sleep

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

void set_threads(int threads) { g_team = threads > 1 ? std::make_unique<Team>(threads - 1) : nullptr; }

int threads() { return g_team ? g_team->size() : 1; }

void matvec(const float* W, const float* b, const float* x, float* y, int64_t rows, int64_t cols) {
  std::unique_lock<std::mutex> busy(g_team_busy, std::defer_lock);
  if (!g_team || !busy.try_lock()) return matvec_rows(W, b, x, y, 0, rows, cols);
  const int parts = g_team->size();
  g_team->run([&](int part) { matvec_rows(W, b, x, y, rows * part / parts, rows * (part + 1) / parts, cols); });
}

DRACARYS_VECTOR_CLONES
void layer_norm(const float* x, const float* gamma, const float* beta, double eps, float* y, int64_t n) {
  double sum = 0.0, square_sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) square_sum += (x[i] - mean) * (x[i] - mean);
  const double variance = square_sum / static_cast<double>(n);  // biased, as LayerNorm's
  const auto m = static_cast<float>(mean), inv_std = static_cast<float>(1.0 / std::sqrt(variance + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * inv_std * gamma[i] + beta[i];
}

void gelu(float* x, int64_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752f;
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

DRACARYS_VECTOR_CLONES
void attend_one(const float* q, const float* K, const float* V, int64_t length, int64_t dk, float scale, float* scores,
                float* out) {
  // scores = K·q, scaled; the newest position sees every cached one, so there is no mask
  float max_score = -INFINITY;
  for (int64_t t = 0; t < length; ++t) {
    scores[t] = dot(K + t * dk, q, dk) * scale;
    max_score = std::max(max_score, scores[t]);
  }
  // softmax: the head's attention filter
  float total = 0.0f;
  for (int64_t t = 0; t < length; ++t) {
    scores[t] = std::exp(scores[t] - max_score);
    total += scores[t];
  }
  const float inv_total = 1.0f / total;
  // filter · V
  std::fill(out, out + dk, 0.0f);
  for (int64_t t = 0; t < length; ++t) {
    const float w = scores[t] * inv_total;
    scores[t] = w;
    for (int64_t j = 0; j < dk; ++j) out[j] += w * V[t * dk + j];
  }
}

}  // namespace dracarys::kernels
