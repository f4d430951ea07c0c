#include "cli/logging.h"

#include <c10/util/Exception.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <filesystem>
#include <new>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "cli/unknown_options.h"
#include "data/text.h"

// glog, where this LibTorch logs through it (C10_USE_GLOG: Debian's does; the official builds
// log through c10's own code, which prints nothing here before our error).
#include <c10/macros/cmake_macros.h>
#ifdef C10_USE_GLOG
#include <glog/logging.h>
#endif

namespace dracarys {

namespace {
// Only glog's FATAL lines: c10d's and Gloo's warnings and errors ("socket.cpp:860] ...", and
// "Logging before InitGoogleLogging()") would print before our own one-line error, which says
// what they mean.
void quiet_library_logs() {
#ifdef C10_USE_GLOG
  FLAGS_minloglevel = google::GLOG_FATAL;
  if (!google::IsGoogleLoggingInitialized()) google::InitGoogleLogging("dracarys");
#endif
}
}  // namespace

void setup_logging() {
  quiet_library_logs();
  spdlog::set_default_logger(spdlog::stderr_color_mt("dracarys"));
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) return true;
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  if (!c10) return false;
  const std::string what = c10->what_without_backtrace();
  return what.find("allocate") != std::string::npos || what.find("out of memory") != std::string::npos;
}

namespace {

constexpr const char* kOutOfMemory =
    "out of memory: the model and batch do not fit in this machine's memory; lower --batch-size, --context or the "
    "model's size";

// Our own sentence for what a library threw: the libraries' texts name their internals, not
// the file or option a user can change.
std::string user_text(const std::exception& e) {
  if (is_out_of_memory(e)) return kOutOfMemory;
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    const std::string what = c10->what_without_backtrace();
    return "internal error in a tensor operation (please report it with the command that caused it): " +
           what.substr(0, what.find('\n')).substr(0, 200);
  }
  if (const auto* fs = dynamic_cast<const std::filesystem::filesystem_error*>(&e))
    return (fs->path1().empty() ? std::string("a file") : fs->path1().string()) + ": " + fs->code().message();
  if (dynamic_cast<const nlohmann::json::exception*>(&e))
    return "internal error reading JSON data (please report it with the command that caused it)";
  return e.what();
}

}  // namespace

int report_error(const std::exception& e) {
  const std::string text = user_text(e);
  spdlog::error("{}", escape_control(text.substr(0, text.find('\n'))));
  return 1;
}

namespace {

// CLI11's sentences ("At Most 1 required but received 2") in our words; its wording differs
// between versions, so anything not recognised keeps its text after our own lead-in.
std::string parse_error_text(const CLI::ParseError& e) {
  const std::string what = e.what();
  static const std::vector<std::pair<std::regex, std::string>> kOurWords = {
      {std::regex("^(.*): At Most (\\d+) required but received (\\d+)$"),
       "$1 was given $3 values; it takes at most $2 (give it once)"},
      {std::regex("^(.*): At least (\\d+) required but received (\\d+)$"),
       "$1 needs at least $2 value(s); it was given $3"},
      {std::regex("^Expected (exactly|at least) (\\d+) arguments to (.*), got (\\d+)$"),
       "$3 needs $1 $2 value(s); it was given $4"},
      {std::regex("^Could not convert: (.*) = (.*)$"), "$1: '$2' is not a value it takes"},
      {std::regex("^The value (.*) is not an allowed value for (.*)$"), "$2: '$1' is not a value it takes"},
      {std::regex("^(.*) is required$"), "$1 is required"},
      {std::regex("^(.*) excludes (.*)$"), "$1 cannot be given with $2"},
      {std::regex("^(.*) requires (.*)$"), "$1 needs $2 too"},
      {std::regex("^(.*): too many inputs for a flag$"), "$1 is a flag: it takes no value"},
      {std::regex("^(.*): Should be true/false or a number$"), "$1 takes true, false or a number"},
      {std::regex("^(.*) was not readable \\(missing\\?\\)$"), "$1 cannot be read (does it exist?)"},
  };
  for (const auto& [pattern, words] : kOurWords)
    if (std::regex_match(what, pattern)) return std::regex_replace(what, pattern, words);
  return "the command line cannot be read: " + what;
}

}  // namespace

int report_parse_error(CLI::App& app, const CLI::ParseError& e) {
  if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help
  std::string text;
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) {  // words no option takes, in the order given
    std::vector<std::string> names;
    for (const CLI::Option* option : app.get_options())
      for (const auto& name : option->get_lnames()) names.push_back(name);
    text = unknown_arguments_text(app.remaining(), names);
  } else {
    text = parse_error_text(e);
  }
  spdlog::error("{} (see --help)", escape_control(text.substr(0, text.find('\n'))));
  return 1;
}

}  // namespace dracarys
