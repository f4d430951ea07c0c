// Outputs never destroy what is not ours: every file the programs write is checked before any
// work starts, one training run at a time holds an output, and killed saves leave nothing behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "checkpoint/output_files.h"
#include "cli_util.h"

using namespace dracarys::testing;

namespace {

const std::string kQuick = kTiny + kVocab + " --val-share 0 --max-steps 2 --eval-every 100";

// A PID that belonged to a process which has ended.
pid_t dead_pid() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  return pid;
}

}  // namespace

TEST(Outputs, TrainingNeverReplacesAFileThatIsNotACheckpoint) {
  TempDir d;
  const auto corpus = tiny_corpus(d);
  const std::string before = slurp(corpus);
  // --out naming the corpus itself: refused before training, the corpus untouched.
  expect_one_line_error(run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + corpus),
                        "not written by dracarys");
  EXPECT_EQ(slurp(corpus), before);
  // A FIFO (as a device node would be) is not replaced.
  ASSERT_EQ(mkfifo(d.file("fifo").c_str(), 0644), 0);
  expect_one_line_error(run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + d.file("fifo")),
                        "not a regular file");
  struct stat st {};
  ASSERT_EQ(stat(d.file("fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  // A folder, an empty name, a missing folder: errors at the start, not at the first save.
  expect_one_line_error(run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + d.path().string()), "is a folder");
  expect_one_line_error(run(d, kTrain + " --corpus " + corpus + kQuick + " --out ''"), "--out is empty");
  expect_one_line_error(run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + d.file("no/such/m.pt")),
                        "does not exist");
  // A best-checkpoint or metrics path that holds someone else's file is refused too.
  d.write("x.best.pt", "my notes");
  expect_one_line_error(run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + d.file("x.pt")),
                        "not written by dracarys");
  EXPECT_EQ(slurp(d.file("x.best.pt")), "my notes");
  // An existing checkpoint is ours: training over it works.
  ASSERT_EQ(run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + d.file("m.pt")).code, 0);
  auto again = run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + d.file("m.pt"));
  EXPECT_EQ(again.code, 0) << again.err;
}

TEST(Outputs, InferenceNeverReplacesItsInputsOrForeignFiles) {
  TempDir d;
  const auto corpus = tiny_corpus(d);
  const auto ckpt = d.file("m.pt");
  ASSERT_EQ(run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + ckpt).code, 0);
  const std::string ckpt_bytes = slurp(ckpt);
  const std::string infer = kInfer + " -c " + ckpt + " --threads 1";
  // Over the checkpoint just loaded, or over the corpus: refused, both untouched.
  expect_one_line_error(run(d, infer + " --export-tokenizer " + ckpt), "not written by dracarys");
  expect_one_line_error(run(d, infer + " -p 'jon snow:' --attention-map " + ckpt), "not written by dracarys");
  expect_one_line_error(run(d, infer + " --export-tokenizer " + corpus), "not written by dracarys");
  EXPECT_EQ(slurp(ckpt), ckpt_bytes);
  // Files it wrote itself may be written again.
  ASSERT_EQ(run(d, infer + " --export-tokenizer " + d.file("t.model")).code, 0);
  auto r = run(d, infer + " --export-tokenizer " + d.file("t.model"));
  EXPECT_EQ(r.code, 0) << r.err;
  for (const std::string map : {"a.svg", "a.html"}) {
    ASSERT_EQ(run(d, infer + " -p 'jon snow:' --attention-map " + d.file(map)).code, 0);
    r = run(d, infer + " -p 'arya stark:' --attention-map " + d.file(map));
    EXPECT_EQ(r.code, 0) << r.err;
  }
  expect_one_line_error(run(d, infer + " -p 'jon snow:' --attention-map " + d.file("missing/a.svg")), "does not exist");
}

TEST(Outputs, OneTrainingRunPerOutputAndStaleTemporariesRemoved) {
  TempDir d;
  const auto corpus = tiny_corpus(d);
  const auto out = d.file("busy.pt");
  // Leftovers of a run killed mid-save (its process is gone) and of a live process (kept).
  d.write("busy.pt.tmp." + std::to_string(dead_pid()), "DRACARYS half a checkpoint");
  d.write("busy.pt.tmp." + std::to_string(getpid()), "a live process's file");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = kTrain + " --corpus " + corpus + kTiny + kVocab +
                            " --val-share 0 --max-steps 1000000 --eval-every 1000000 --out " + out +
                            " > /dev/null 2>&1 < /dev/null";
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), nullptr);
    _exit(127);
  }
  // Wait until the first run holds its lock, then start a second on the same output.
  for (int i = 0; i < 100 && slurp(out + ".dracarys-lock").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_FALSE(slurp(out + ".dracarys-lock").empty());
  auto second = run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + out);
  expect_one_line_error(second, "being written by another training run (PID " + std::to_string(pid) + ")");
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  int tmp_files = 0;
  for (auto& e : std::filesystem::directory_iterator(d.path()))
    tmp_files += e.path().filename().string().rfind("busy.pt.tmp.", 0) == 0;
  EXPECT_EQ(tmp_files, 1) << "only the live process's temporary file remains";
  EXPECT_FALSE(std::filesystem::exists(out + ".dracarys-lock")) << "the lock file goes with its run";
  // The lock is free again.
  auto third = run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + out);
  EXPECT_EQ(third.code, 0) << third.err;
}

TEST(Outputs, TheLockAndTemporaryNamesNeverTouchAUsersFiles) {
  TempDir d;
  const auto corpus = tiny_corpus(d);
  // `--out Cargo` next to a project's Cargo.lock: the lock is another name, Cargo.lock untouched.
  const auto cargo_lock = d.write("Cargo.lock", "# a user's lock file\n");
  auto r = run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + d.file("Cargo"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(cargo_lock), "# a user's lock file\n");
  EXPECT_FALSE(std::filesystem::exists(d.file("Cargo.dracarys-lock"))) << "our lock goes with the run";

  // A symbolic link at the lock's name: refused, its target untouched.
  const auto target = d.write("precious.txt", "keep me\n");
  ASSERT_EQ(symlink(target.c_str(), d.file("run.pt.dracarys-lock").c_str()), 0);
  expect_one_line_error(run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + d.file("run.pt")),
                        "is not a lock file of dracarys");
  EXPECT_EQ(slurp(target), "keep me\n");
  // A user's file at the lock's name: the same.
  const auto other = d.write("other.pt.dracarys-lock", "notes\n");
  expect_one_line_error(run(d, kTrain + " --corpus " + corpus + kQuick + " --out " + d.file("other.pt")),
                        "is not a lock file of dracarys");
  EXPECT_EQ(slurp(other), "notes\n");

  // Links planted at every name a save of this process could once have used are not followed.
  const auto saved = d.file("saved.pt");
  for (const std::string tag : {".tmp.", ".probe."})
    ASSERT_EQ(symlink(target.c_str(), (saved + tag + std::to_string(getpid())).c_str()), 0);
  dracarys::write_file_atomic(saved, "DRACARYS new bytes");
  EXPECT_EQ(slurp(target), "keep me\n");
  EXPECT_EQ(slurp(saved), "DRACARYS new bytes");
  struct stat st {};
  ASSERT_EQ(lstat(saved.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode)) << "the output is a file of its own, not a link to the planted target";
}
