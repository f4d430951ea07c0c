#include "serve/guarded_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace dracarys {

namespace {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline` (0 when it has passed).
int millis_until(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60 * 60 * 1000));
}

bool wait_for(int sock, short events, int millis) {
  pollfd p{sock, events, 0};
  int n;
  while ((n = ::poll(&p, 1, millis)) < 0 && errno == EINTR) {
  }
  return n > 0;
}

std::string address_of(int sock, bool peer, int* port = nullptr) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if ((peer ? ::getpeername(sock, reinterpret_cast<sockaddr*>(&a), &len)
            : ::getsockname(sock, reinterpret_cast<sockaddr*>(&a), &len)) != 0)
    return "";
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    if (port) *port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    if (port) *port = ntohs(v6->sin6_port);
  }
  return text;
}

// The stream httplib reads one request from: reads wait at most until the request's deadline;
// writes wait for the client as long as it keeps reading (a long generation streams).
class DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(int sock, Clock::time_point deadline, std::chrono::seconds write_timeout)
      : sock_(sock), deadline_(deadline), write_timeout_(write_timeout) {}

  bool is_readable() const override { return buffered() > 0 || wait_for(sock_, POLLIN, millis_until(deadline_)); }
  bool is_writable() const override {
    if (!wait_for(sock_, POLLOUT, static_cast<int>(write_timeout_.count() * 1000))) return false;
    // Alive unless the client has closed its end (readable with nothing to read).
    char byte;
    return !wait_for(sock_, POLLIN, 0) || ::recv(sock_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
  }
  ssize_t read(char* ptr, size_t size) override {
    if (buffered() == 0) {
      if (!wait_for(sock_, POLLIN, millis_until(deadline_))) return -1;  // the deadline passed
      ssize_t n;
      while ((n = ::recv(sock_, buffer_, sizeof buffer_, 0)) < 0 && errno == EINTR) {
      }
      if (n <= 0) return n;
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, buffered());
    std::copy(buffer_ + begin_, buffer_ + begin_ + n, ptr);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!wait_for(sock_, POLLOUT, static_cast<int>(write_timeout_.count() * 1000))) return -1;
    ssize_t n;
    while ((n = ::send(sock_, ptr, size, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    return n;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { ip = address_of(sock_, true, &port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { ip = address_of(sock_, false, &port); }
  socket_t socket() const override { return sock_; }
  bool has_unread_bytes() const { return buffered() > 0; }

 private:
  size_t buffered() const { return end_ - begin_; }
  int sock_;
  Clock::time_point deadline_;
  std::chrono::seconds write_timeout_;
  char buffer_[4096];
  size_t begin_ = 0, end_ = 0;
};

// Connection threads, started as they are needed (up to `max_threads`) and kept: a new
// connection goes to the thread that finished last, so a light load keeps running on the same
// few threads and their thread-local state (LibTorch's, the one-token step's working arrays) is
// not spread over hundreds of them.
class LastIdleFirstPool : public httplib::TaskQueue {
 public:
  explicit LastIdleFirstPool(size_t max_threads) : max_threads_(max_threads) {}
  ~LastIdleFirstPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopping_) return;
    if (!idle_.empty()) {
      Worker* w = idle_.back();
      idle_.pop_back();
      w->job = std::move(fn);
      w->wake.notify_one();
    } else if (workers_.size() < max_threads_) {
      workers_.push_back(std::make_unique<Worker>());
      Worker* w = workers_.back().get();
      w->job = std::move(fn);
      w->thread = std::thread([this, w] { work(*w); });
    } else {
      waiting_.push_back(std::move(fn));
    }
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
      for (auto& w : workers_) w->wake.notify_one();
    }
    for (auto& w : workers_) w->thread.join();
  }

 private:
  struct Worker {
    std::thread thread;
    std::condition_variable wake;
    std::function<void()> job;
  };

  void work(Worker& w) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      if (w.job) {
        auto job = std::move(w.job);
        w.job = nullptr;
        lock.unlock();
        job();
        lock.lock();
        continue;
      }
      if (!waiting_.empty()) {  // connections that found every thread busy
        w.job = std::move(waiting_.front());
        waiting_.pop_front();
        continue;
      }
      if (stopping_) return;
      idle_.push_back(&w);
      w.wake.wait(lock, [&] { return w.job || stopping_; });
      if (!w.job) {  // woken to stop: leave the idle list
        idle_.erase(std::remove(idle_.begin(), idle_.end(), &w), idle_.end());
        return;
      }
    }
  }

  const size_t max_threads_;
  std::mutex mutex_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Worker*> idle_;  // the last to finish at the back
  std::deque<std::function<void()>> waiting_;
};

}  // namespace

GuardedHttpServer::GuardedHttpServer(ConnectionLimits limits) : limits_(limits) {
  // A thread for every connection allowed, and a few for the ones turned away.
  const size_t threads = limits_.max_connections + 4;
  new_task_queue = [threads] { return new LastIdleFirstPool(threads); };
}

size_t GuardedHttpServer::open_connections() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return open_;
}

bool GuardedHttpServer::admit(const std::string& client) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (open_ >= limits_.max_connections || per_client_[client] >= limits_.max_per_client) return false;
  ++open_;
  ++per_client_[client];
  return true;
}

void GuardedHttpServer::release(const std::string& client) {
  std::lock_guard<std::mutex> lock(mutex_);
  --open_;
  if (--per_client_[client] == 0) per_client_.erase(client);
}

bool GuardedHttpServer::process_and_close_socket(socket_t sock) {
  const std::string client = address_of(sock, true);
  bool served = false;
  if (admit(client)) {
    // One request after another on the connection, as httplib's own loop does, each within its
    // deadline; the last one allowed (or a stopping server) closes the connection.
    for (size_t left = keep_alive_max_count_; left > 0 && is_running(); --left) {
      if (!wait_for(sock, POLLIN, static_cast<int>(limits_.keep_alive_idle.count() * 1000))) break;
      DeadlineStream stream(sock, Clock::now() + limits_.request_deadline,
                            std::chrono::seconds(std::max<time_t>(write_timeout_sec_, 1)));
      bool closed = false;
      served = process_request(stream, left == 1, closed, nullptr);
      // httplib reads no further than the request; bytes past it (a pipelined request) would
      // be lost with this stream, so such a connection ends here.
      if (!served || closed || stream.has_unread_bytes()) break;
    }
    release(client);
  } else {  // over a limit: say so, and close
    const std::string body =
        R"({"error":{"code":503,"message":"too many connections; try again shortly","param":null,"type":"unavailable_error"}})";
    const std::string answer =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    [[maybe_unused]] const auto sent = ::send(sock, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return served;
}

}  // namespace dracarys
