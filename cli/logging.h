// All messages go through spdlog to stderr, so stdout carries only results (completions, JSON).
#pragma once

#include <CLI/CLI.hpp>

#include <exception>

namespace dracarys {

void setup_logging();

// Whether `e` says memory ran out: std::bad_alloc, or LibTorch's allocator failing.
bool is_out_of_memory(const std::exception& e);

// Logs an error as the one line a user sees (no LibTorch backtrace) and returns exit code 1.
int report_error(const std::exception& e);

// After app.parse() threw: --help prints as CLI11 writes it; a mistake on the command line is
// one error line like every other, naming the option. Returns the exit code.
int report_parse_error(CLI::App& app, const CLI::ParseError& e);

}  // namespace dracarys
