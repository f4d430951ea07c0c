#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace dracarys {

void setup_logging() {
  spdlog::set_default_logger(spdlog::stderr_color_mt("dracarys"));
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
}

}  // namespace dracarys
