// Helpers for the end-to-end tests: run an executable as a user would, write a tiny corpus,
// and check that bad input gives one clear error line.
#pragma once

#include <gtest/gtest.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
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
inline const std::string kTiny = kShape + " --lr 3e-3 --warmup-steps 20";
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
