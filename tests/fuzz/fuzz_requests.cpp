// libFuzzer target: a request body through dracarys-serve's parsers (serve/requests.cpp).
// Bad input may only ever be a RequestError; whatever is accepted stays within the limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "serve/requests.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  const dracarys::RequestLimits limits;
  try {
    const auto r = dracarys::parse_completion(body, limits, 300);
    if (r.max_new_tokens < 0 || r.max_new_tokens > limits.max_tokens || r.prompts.size() != 1) std::abort();
    if (r.prompts[0].ids)
      for (auto id : *r.prompts[0].ids)
        if (id < 0 || id >= 300) std::abort();
  } catch (const dracarys::RequestError&) {
  }
  try {
    const auto r = dracarys::parse_openai_completion(body, limits, 300);
    if (r.choices * static_cast<int64_t>(r.prompts.size()) > limits.max_choices) std::abort();
  } catch (const dracarys::RequestError&) {
  }
  try {
    const auto r = dracarys::parse_chat(body, limits);
    if (r.messages.empty() || r.completion.choices > limits.max_choices) std::abort();
    for (const auto& m : r.messages)
      if (m.role != "user" && m.role != "assistant") std::abort();
  } catch (const dracarys::RequestError&) {
  }
  try {
    const auto r = dracarys::parse_attention(body, limits, 300);
    if (r.tokens)
      for (auto id : *r.tokens)
        if (id < 0 || id >= 300) std::abort();
  } catch (const dracarys::RequestError&) {
  }
  return 0;
}
