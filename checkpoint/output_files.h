// Files the programs write, and the rules that keep them from destroying what is not theirs.
//
//   check_output_path   before any work: the path names a file in an existing folder, and if
//                       something is there already it is a regular file this program wrote
//                       (a checkpoint, a tokenizer model, an attention map, a metrics log)
//   OutputLock          one training run per output: flock() on "OUT.dracarys-lock" for the run's
//                       life; an existing file there is touched only if it is a lock of ours
//   write_file_atomic   a new temporary file (O_EXCL, unguessable name), fsync, rename: a crash
//                       leaves the old file whole, and no planted file or link is followed
//   remove_stale_temporaries  "OUT.tmp.PID.*" files left by a run that was killed mid-save
#pragma once

#include <functional>
#include <string>

namespace dracarys {

// True when an existing file's contents are something this program writes (and may replace).
using IsOurs = std::function<bool(const std::string& path)>;

// Throws std::invalid_argument, naming `option` and the path, when `path` is empty, a folder,
// in a folder that does not exist, an existing device, FIFO or socket, or an existing file for
// which `ours` is false.
void check_output_path(const std::string& path, const std::string& option, const IsOurs& ours);

// The first `n` bytes of a file, or fewer ("" when it cannot be read); for recognisers.
std::string file_head(const std::string& path, size_t n);

// Recognisers for check_output_path. Each reads at most the file's first few kilobytes.
bool is_checkpoint_file(const std::string& path);     // starts with the checkpoint magic
bool is_metrics_file(const std::string& path);        // empty, or JSON lines
bool is_attention_map_file(const std::string& path);  // an SVG or HTML map written by dracarys-infer

// Writes `bytes` to `path` through a temporary file in the same folder (fsync, then rename).
// Throws std::runtime_error naming the path and the system's reason.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Removes "PATH.tmp.PID[.*]" and "PATH.probe.PID" files whose process is gone. Returns how many.
int remove_stale_temporaries(const std::string& path);

// Holds an exclusive lock on "PATH.dracarys-lock" (flock) for its lifetime; the file carries our
// magic and the holder's PID. The constructor throws std::invalid_argument naming that PID when
// another process holds it, and when something other than a lock of ours (a user's file, a
// symbolic link) is at the name. The file is removed at the end only if it is still ours.
class OutputLock {
 public:
  explicit OutputLock(const std::string& path);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string lock_path_;
  int fd_ = -1;
};

}  // namespace dracarys
