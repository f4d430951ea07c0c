#include "common/logging.h"

#include <c10/util/Exception.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <new>
#include <nlohmann/json.hpp>
#include <string>

#include "data/text.h"

namespace dracarys {

void setup_logging() {
  spdlog::set_default_logger(spdlog::stderr_color_mt("dracarys"));
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
}

namespace {

constexpr const char* kOutOfMemory =
    "out of memory: the model and batch do not fit in this machine's memory; lower --batch-size, --context or the "
    "model's size";

// Our own sentence for what a library threw: the libraries' texts name their internals, not
// the file or option a user can change.
std::string user_text(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) return kOutOfMemory;
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    const std::string what = c10->what_without_backtrace();
    if (what.find("allocate") != std::string::npos || what.find("out of memory") != std::string::npos)
      return kOutOfMemory;
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

int report_parse_error(CLI::App& app, const CLI::ParseError& e) {
  if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help
  spdlog::error("{} (see --help)", escape_control(e.what()));
  return e.get_exit_code();
}

}  // namespace dracarys
