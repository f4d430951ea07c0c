// All messages go through spdlog to stderr, so stdout carries only results (completions, JSON).
#pragma once

#include <exception>

namespace dracarys {

void setup_logging();

// Logs an error as the one line a user sees (no LibTorch backtrace) and returns exit code 1.
int report_error(const std::exception& e);

}  // namespace dracarys
