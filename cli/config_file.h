// --config FILE: options read from a TOML/INI file whose keys are the long option names. CLI11
// reads the file; these checks come first, so that a bad file is one clear line.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>

namespace dracarys {

// The largest --config file read (a few hundred bytes hold every option).
constexpr uint64_t kMaxConfigBytes = 1 << 20;

// Checks the --config file named on the command line before CLI11 reads it, as read_file checks
// a corpus file: a regular file (a FIFO would wait forever, /dev/zero never end) of at most
// kMaxConfigBytes. Throws std::invalid_argument naming it.
void check_config_argument(int argc, const char* const* argv);

// A --config file's keys must be option names: an unknown key (a typo would silently be
// ignored) throws std::invalid_argument naming it and the nearest known key.
void check_config_file_keys(const CLI::App& app);

}  // namespace dracarys
