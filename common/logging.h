// All messages go through spdlog to stderr, so stdout carries only results (completions, JSON).
#pragma once

namespace dracarys {
void setup_logging();
}
