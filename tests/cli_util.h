// Helpers for the end-to-end tests: run an executable as a user would, write a tiny corpus,
// and check that bad input gives one clear error line.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace dracarys::testing {

inline const std::string kLine = "cersei lannister: When you play the game of thrones, you win or you die.";
inline const std::string kPrompt = "cersei lannister: When you play the game of thrones, you";

// A tiny model that trains in about a second.
inline const std::string kShape =
    " --layers 2 --heads 2 --d-model 64 --d-ff 128 --context 64 --batch-size 8 --threads 1";
inline const std::string kTiny = kShape + " --lr 3e-3 --warmup 0.05";
inline const std::string kVocab = " --vocab-size 400";

struct Result {
  int code = -1;
  std::string out, err;
};

// Runs a shell command with stdin from /dev/null (unless the command redirects it).
inline Result run(const TempDir& d, const std::string& cmd) {
  const std::string o = d.file("stdout.txt"), e = d.file("stderr.txt");
  int status = 0;
  if (cmd.find(" < ") != std::string::npos || cmd.find("| ") != std::string::npos)
    status = std::system(("(" + cmd + ") > " + o + " 2> " + e).c_str());
  else
    status = std::system((cmd + " < /dev/null > " + o + " 2> " + e).c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(o), slurp(e)};
}

// Waits up to 200 ms for output on `fd` and appends it to `screen`. False once the other end
// has closed (the program on a pseudo-terminal exited).
inline bool read_some(int fd, std::string& screen) {
  fd_set fds;
  FD_ZERO(&fds);
  FD_SET(fd, &fds);
  timeval tv{0, 200000};
  if (select(fd + 1, &fds, nullptr, nullptr, &tv) <= 0) return true;
  char buf[4096];
  const ssize_t n = read(fd, buf, sizeof buf);
  if (n <= 0) return false;
  screen.append(buf, static_cast<size_t>(n));
  return true;
}

// One step of a person at a terminal: wait until the screen shows `wait_for` (at once when
// empty), then type `type` ("\x04" is Ctrl-D).
struct Typed {
  std::string wait_for, type;
};
struct TerminalSession {
  std::string screen;  // everything the program showed
  int status = -1;     // as waitpid gives it
  size_t typed = 0;    // steps carried out
};

// Runs `argv` on a pseudo-terminal (standard input and output are a terminal), takes the steps
// in order, and waits until the program exits (at most `seconds`). With `hide_log`, standard
// error goes to /dev/null instead (the log has colours of its own).
inline TerminalSession run_on_terminal(const std::vector<std::string>& argv, const std::vector<Typed>& steps = {},
                                       bool hide_log = false, int seconds = 60) {
  TerminalSession session;
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  if (pid < 0) return session;
  if (pid == 0) {
    if (hide_log) dup2(open("/dev/null", O_WRONLY), STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  bool exited = false;
  while (!exited && std::chrono::steady_clock::now() < deadline) {
    if (session.typed < steps.size() && session.screen.find(steps[session.typed].wait_for) != std::string::npos) {
      const auto& text = steps[session.typed].type;
      if (write(master, text.data(), text.size()) != static_cast<ssize_t>(text.size())) break;
      ++session.typed;
      continue;
    }
    exited = !read_some(master, session.screen);  // the terminal closed: the program ended
  }
  if (!exited) kill(pid, SIGKILL);  // still running past the deadline
  waitpid(pid, &session.status, 0);
  close(master);
  return session;
}

// Trains `args` on the corpus file `corpus` into `out`, once per build. Several suites train
// the same tiny model in their set-up, and ctest runs each test in a process of its own, so the
// checkpoint is kept in the build folder (test-models/), keyed by the corpus's bytes, the
// arguments and the dracarys-train and tokenizer plugin binaries that made it, and each test
// gets its own copy. Only the checkpoint is kept: a test that reads the training log, the
// metrics or the best checkpoint trains for itself.
inline Result train_once(const TempDir& d, const std::string& corpus, const std::string& args, const std::string& out) {
  const std::string bin(DRACARYS_BIN_DIR);
  std::string identity = slurp(corpus) + '\0' + args;
  for (const char* binary : {"/dracarys-train", "/libdracarys_spm.so"}) {
    struct stat st {};
    if (::stat((bin + binary).c_str(), &st) == 0)
      identity += '\0' + std::to_string(st.st_size) + '.' + std::to_string(st.st_mtim.tv_sec) + '.' +
                  std::to_string(st.st_mtim.tv_nsec);
  }
  const std::filesystem::path kept =
      std::filesystem::path(bin) / ".." / "test-models" / (std::to_string(std::hash<std::string>()(identity)) + ".pt");
  std::error_code ec;
  if (std::filesystem::exists(kept, ec) && std::filesystem::copy_file(kept, out, ec)) return {0, "", ""};
  Result r = run(d, kTrain + " --corpus " + corpus + " --out " + out + args);
  if (r.code != 0) return r;
  // Kept under a name of its own first, then linked into place: a test that trains the same
  // model at the same moment finds either nothing or a whole file.
  std::filesystem::create_directories(kept.parent_path(), ec);
  const std::string partial = kept.string() + "." + std::to_string(::getpid());
  if (std::filesystem::copy_file(out, partial, ec)) {
    std::filesystem::create_hard_link(partial, kept, ec);  // fails harmlessly when another test was first
    std::filesystem::remove(partial, ec);
  }
  return r;
}

// Forty lines of eight speakers, the seed line among them.
inline std::string tiny_corpus(const TempDir& d, const std::string& name = "tiny.txt") {
  const std::vector<std::string> lines = {kLine,
                                          "ned stark: Winter is coming.",
                                          "tyrion lannister: I drink and I know things.",
                                          "arya stark: Not today.",
                                          "jon snow: I know nothing.",
                                          "daenerys targaryen: I will take what is mine with fire and blood.",
                                          "hodor: Hodor.",
                                          "sansa stark: The north remembers."};
  std::string text;
  for (int i = 0; i < 40; ++i) text += lines[(i * 3) % lines.size()] + "\n";
  return d.write(name, text);
}

// A scripted exchange, said six times in one episode: a small model learns it by heart, so
// its greedy completions are known in advance.
inline const std::vector<std::string> kScene = {
    "ned stark: Winter is coming.", "robert baratheon: You were always the gloomy one.",
    "ned stark: Someone has to be.", "cersei lannister: The king is tired."};
inline const std::string kSceneShape = kTiny + " --vocab-size 300 --val-share 0";

// Writes the scene corpus and trains the tiny model on it; returns the checkpoint's path (empty
// when training failed, with `error` holding its log).
inline std::string train_scene_model(const TempDir& d, std::string* corpus = nullptr, std::string* error = nullptr) {
  std::string text;
  for (int i = 0; i < 6; ++i)
    for (const auto& l : kScene) text += l + "\n";
  const std::string path = d.write("scene.txt", text), ckpt = d.file("scene.pt");
  if (corpus) *corpus = path;
  auto r = train_once(d, path, kSceneShape + " --max-steps 600 --eval-every 600", ckpt);
  if (error) *error = r.err;
  return r.code == 0 ? ckpt : "";
}

// Bad input: a non-zero exit (not a crash), the expected words, exactly one error line, and
// no library text (LibTorch frames, nlohmann's or std::filesystem's own wording).
inline void expect_one_line_error(const Result& r, const std::string& needle) {
  EXPECT_NE(r.code, 0) << r.err;
  EXPECT_LT(r.code, 128) << "crashed: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "wanted '" << needle << "' in: " << r.err;
  for (const char* raw :
       {"frame #", "[json.exception", "filesystem error", "DefaultCPUAllocator", ".cc(", "Exception raised from"})
    EXPECT_EQ(r.err.find(raw), std::string::npos) << "library text leaked: " << r.err;
  int error_lines = 0;
  std::istringstream s(r.err);
  for (std::string l; std::getline(s, l);) error_lines += l.find("error") != std::string::npos;
  EXPECT_EQ(error_lines, 1) << r.err;
}

}  // namespace dracarys::testing
