// Helpers shared by the tests: scratch folders and files the tests write themselves.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace dracarys::testing {

// A fresh folder under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("dracarys-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(file(name), std::ios::binary) << content;
    return file(name);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string shared_data(const std::string& name) {
  for (auto dir : {"../shared/data/got/", "../../shared/data/got/", "../../../shared/data/got/"}) {
    auto p = std::filesystem::path(DRACARYS_SOURCE_DIR) / dir / name;
    if (std::filesystem::exists(p)) return p.string();
  }
  return "";
}

#ifdef DRACARYS_BIN_DIR
// The executables under test, from the build tree.
inline const std::string kTrain = std::string(DRACARYS_BIN_DIR) + "/dracarys-train";
inline const std::string kInfer = std::string(DRACARYS_BIN_DIR) + "/dracarys-infer";
#endif

// Whether this run requires every optional piece (CI sets DRACARYS_REQUIRE_OPTIONAL=1: it installs
// them all, so a test that would skip for a missing one fails instead).
inline bool optional_pieces_required() {
  const char* v = std::getenv("DRACARYS_REQUIRE_OPTIONAL");
  return v && std::string(v) == "1";
}

}  // namespace dracarys::testing

// In a test body, where something scripts/setup.sh installs is missing: one skip line naming it
// and the command, or a failure where every piece is required.
#define DRACARYS_SKIP_MISSING(what)                                                  \
  do {                                                                               \
    if (::dracarys::testing::optional_pieces_required())                             \
      FAIL() << (what) << " is missing, and this run requires every optional piece"; \
    else                                                                             \
      GTEST_SKIP() << (what) << " is missing (scripts/setup.sh installs it)";        \
  } while (0)
