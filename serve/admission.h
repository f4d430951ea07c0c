// How requests share the model: `slots` of them run at once, each on its own KV cache; up to
// `queue` more wait their turn, in order of arrival; past that a request is turned away at
// once (HTTP 503) rather than left to pile up.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

namespace dracarys {

class Admission {
 public:
  Admission(int slots, int queue) : slots_(slots), queue_(queue) {}

  // Holds one slot while it lives.
  class Ticket {
   public:
    explicit Ticket(Admission& a) : a_(a) {}
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() { a_.leave(); }

   private:
    Admission& a_;
  };

  // Waits for a slot; null when the queue is full or the server is closing.
  std::unique_ptr<Ticket> enter() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (closing_ || (waiting_ >= queue_ && running_ >= slots_)) return nullptr;
    const uint64_t turn = next_turn_++;
    ++waiting_;
    ready_.wait(lock, [&] { return closing_ || (running_ < slots_ && turn == serving_turn_); });
    --waiting_;
    ++serving_turn_;
    ready_.notify_all();  // the next in line may fit too
    if (closing_) return nullptr;
    ++running_;
    return std::make_unique<Ticket>(*this);
  }

  // Wakes every waiting request with no slot (shutdown).
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
    ready_.notify_all();
  }

  struct Counts {
    int slots, running, waiting;
  };
  Counts counts() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return {slots_, running_, waiting_};
  }

 private:
  void leave() {
    std::lock_guard<std::mutex> lock(mutex_);
    --running_;
    ready_.notify_all();
  }

  const int slots_, queue_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  int running_ = 0, waiting_ = 0;
  uint64_t next_turn_ = 0, serving_turn_ = 0;  // first come, first served
  bool closing_ = false;
};

}  // namespace dracarys
