// Starts dracarys-serve as a child process on 127.0.0.1 and a free port, for the tests and
// the load benchmark.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace dracarys::testing {

class ServerProcess {
 public:
  // Runs `binary` with `args` and --port 0; waits (at most `seconds`) for the line that names
  // the port. The server's log goes to `log_path`.
  bool start(const std::string& binary, const std::vector<std::string>& args, const std::string& log_path,
             int seconds = 60) {
    int out[2];
    if (pipe(out) != 0) return false;
    log_path_ = log_path;
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      std::FILE* log = std::fopen(log_path.c_str(), "w");
      if (log) dup2(fileno(log), STDERR_FILENO);
      close(out[0]);
      std::vector<std::string> all = {binary, "--port", "0"};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    // Read the first line: "dracarys-serve: listening on http://HOST:PORT/".
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      fd_set fds;
      FD_ZERO(&fds);
      FD_SET(out[0], &fds);
      timeval tv{0, 200000};
      if (select(out[0] + 1, &fds, nullptr, nullptr, &tv) <= 0) continue;
      char c;
      if (read(out[0], &c, 1) != 1) break;
      line.push_back(c);
    }
    out_fd_ = out[0];
    const auto colon = line.rfind(':');
    if (colon == std::string::npos) return false;
    port = std::atoi(line.c_str() + colon + 1);
    return port > 0;
  }

  // Sends `signal` and waits (at most `seconds`) for the exit; returns waitpid's status, or -1
  // when it did not exit (it is then killed).
  int stop(int signal = SIGTERM, int seconds = 30) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    int status = -1;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        close(out_fd_);
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    close(out_fd_);
    return -1;
  }

  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // The server's resident memory now and at its peak, in kB (from /proc).
  long memory_kb(const char* field = "VmRSS:") const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    for (std::string l; std::getline(in, l);)
      if (l.rfind(field, 0) == 0) return std::atol(l.c_str() + std::string(field).size());
    return -1;
  }

  ~ServerProcess() {
    if (pid_ > 0) stop(SIGKILL, 5);
  }

  int port = 0;

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string log_path_;
};

}  // namespace dracarys::testing
