#include "checkpoint/output_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace fs = std::filesystem;

namespace dracarys {

namespace {

constexpr size_t kHeadBytes = 4096;  // what the recognisers look at

std::string head_of(const std::string& path, size_t n = kHeadBytes) { return file_head(path, n); }

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

std::string folder_of(const std::string& path) {
  const auto parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

bool process_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH); }

}  // namespace

std::string file_head(const std::string& path, size_t n) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return "";
  std::string buf(n, '\0');
  const ssize_t got = ::read(fd, buf.data(), n);
  ::close(fd);
  buf.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return buf;
}

bool is_checkpoint_file(const std::string& path) { return starts_with(head_of(path, 8), "DRACARYS"); }

bool is_metrics_file(const std::string& path) {
  const std::string h = head_of(path, 2);
  return h.empty() || starts_with(h, "{\"");
}

bool is_attention_map_file(const std::string& path) {
  const std::string h = head_of(path);
  return (starts_with(h, "<svg xmlns=\"http://www.w3.org/2000/svg\"") &&
          h.find("id=\"masked\"") != std::string::npos) ||
         (starts_with(h, "<!DOCTYPE html>") && h.find("<title>dracarys attention") != std::string::npos);
}

void check_output_path(const std::string& path, const std::string& option, const IsOurs& ours) {
  if (path.empty()) throw std::invalid_argument(option + " is empty: give a file name");
  const std::string folder = folder_of(path);
  struct stat st {};
  if (::stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw std::invalid_argument(option + " " + path + ": the folder " + folder + " does not exist");
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;  // a new file
    throw std::invalid_argument(option + " " + path + ": cannot be checked (" + std::strerror(errno) + ")");
  }
  if (S_ISDIR(st.st_mode))
    throw std::invalid_argument(option + " " + path + " is a folder; give a file name inside it");
  if (!S_ISREG(st.st_mode))
    throw std::invalid_argument(option + " " + path +
                                " exists and is not a regular file (a device, FIFO or socket); refusing to replace it");
  if (!ours(path))
    throw std::invalid_argument(option + " " + path +
                                " exists and was not written by dracarys; refusing to overwrite it (move it or choose "
                                "another name)");
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  // A temporary file in the same folder, so that the rename is atomic. mkstemp creates it with
  // O_EXCL under a name no one can plant in advance: a file or a link already at a name is never
  // followed, truncated or written through.
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + ".XXXXXX";
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot write: " + std::strerror(errno));
  ::fchmod(fd, 0644);
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string err = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw std::runtime_error(path + ": cannot write: " + err);
    }
    off += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw std::runtime_error(path + ": cannot flush to disk: " + err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw std::runtime_error(path + ": cannot replace: " + err);
  }
}

int remove_stale_temporaries(const std::string& path) {
  const std::string folder = folder_of(path);
  const std::string name = fs::path(path).filename().string();
  DIR* dir = ::opendir(folder.c_str());
  if (!dir) return 0;
  int removed = 0;
  while (const dirent* e = ::readdir(dir)) {
    const std::string entry = e->d_name;
    for (const std::string tag : {".tmp.", ".probe."}) {
      const std::string prefix = name + tag;
      if (!starts_with(entry, prefix) || entry.size() == prefix.size()) continue;
      // "PID" or "PID.XXXXXX" (write_file_atomic's names)
      const std::string rest = entry.substr(prefix.size());
      const std::string digits = rest.substr(0, rest.find('.'));  // ".probe.PID.XXXXXX" too
      if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
      const long pid = std::stol(digits);
      if (pid == ::getpid() || process_alive(pid)) continue;
      if (::unlink((folder + "/" + entry).c_str()) == 0) ++removed;
    }
  }
  ::closedir(dir);
  return removed;
}

namespace {

// What a lock file of ours holds before the holder's PID: a file without it is not ours to
// truncate or delete.
constexpr char kLockMagic[] = "dracarys output lock, held by PID ";

// Opens the lock file without following a link: created new, or an existing one of ours. Returns
// -1 with errno set, or throws when something that is not ours is at the name.
int open_lock_file(const std::string& lock_path) {
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd >= 0 || errno != EEXIST) return fd;
  fd = ::open(lock_path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  struct stat st {};
  const bool ours = fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
                    (st.st_size == 0 || starts_with(head_of(lock_path, sizeof kLockMagic - 1), kLockMagic));
  if (ours) return fd;
  if (fd >= 0) ::close(fd);
  throw std::invalid_argument(lock_path + " exists and is not a lock file of dracarys (" +
                              (errno == ELOOP ? std::string("a symbolic link") : std::string("another file")) +
                              "); refusing to touch it (move it or choose another --out)");
}

}  // namespace

OutputLock::OutputLock(const std::string& path) : lock_path_(path + ".dracarys-lock") {
  // Lock, then make sure the file locked is still the one at the path: a holder that was just
  // finishing may have removed it in between.
  for (int attempt = 0; attempt < 100; ++attempt) {
    fd_ = open_lock_file(lock_path_);
    if (fd_ < 0)
      throw std::invalid_argument(lock_path_ + ": cannot create the lock file of the output (" + std::strerror(errno) +
                                  ")");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const std::string holder = head_of(lock_path_, 96);
      const std::string pid = starts_with(holder, kLockMagic) ? holder.substr(sizeof kLockMagic - 1) : "";
      ::close(fd_);
      fd_ = -1;
      throw std::invalid_argument(path + " is being written by another training run (PID " +
                                  (pid.empty() ? std::string("unknown") : pid.substr(0, pid.find('\n'))) +
                                  "); wait for it to finish or choose another --out");
    }
    struct stat held {
    }, now{};
    if (::fstat(fd_, &held) == 0 && ::lstat(lock_path_.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev) {
      const std::string text = kLockMagic + std::to_string(::getpid()) + "\n";
      if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) < 0) {
        // The lock holds even if the PID could not be recorded.
      }
      return;
    }
    ::close(fd_);
    fd_ = -1;
  }
  throw std::invalid_argument(lock_path_ + ": cannot take the output's lock");
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  // Still holding the lock, and the name still ours: no other run can be between open and flock.
  struct stat held {
  }, now{};
  if (::fstat(fd_, &held) == 0 && ::lstat(lock_path_.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
      held.st_dev == now.st_dev)
    ::unlink(lock_path_.c_str());
  ::close(fd_);
}

}  // namespace dracarys
