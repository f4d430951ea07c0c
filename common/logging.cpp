#include "common/logging.h"

#include <c10/util/Exception.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

namespace dracarys {

void setup_logging() {
  spdlog::set_default_logger(spdlog::stderr_color_mt("dracarys"));
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
}

int report_error(const std::exception& e) {
  std::string text;
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) text = std::string("LibTorch: ") + c10->what_without_backtrace();
  else text = e.what();
  spdlog::error("{}", text.substr(0, text.find('\n')));
  return 1;
}

}  // namespace dracarys
