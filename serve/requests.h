// What a client may ask dracarys-serve for, read from untrusted JSON bodies: every field is
// checked for its type and range, and a bad one is refused with an error naming it (HTTP 400).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/sampler.h"

namespace dracarys {

// The server's limits on one request (dracarys-serve's options).
struct RequestLimits {
  int64_t max_tokens = 512;         // tokens generated per completion
  size_t max_prompt_bytes = 16384;  // a longer prompt is refused, not tokenised
  int64_t max_choices = 4;          // completions per request (OpenAI's n times its prompts)
};

// A refused request: the HTTP status, the field at fault ("" for the body as a whole) and a
// sentence saying what is wrong.
struct RequestError : std::runtime_error {
  RequestError(int http_status, std::string field_name, const std::string& message)
      : std::runtime_error(message), status(http_status), field(std::move(field_name)) {}
  int status;
  std::string field;
};

// One or more completions of one or more prompts.
struct CompletionRequest {
  std::vector<std::string> prompts;  // as typed; each gets `choices` completions
  std::string speaker;               // dracarys's own field: "speaker: " goes in front of each prompt
  int64_t choices = 1;
  int64_t max_new_tokens = 0;
  SamplingOptions sampling;  // a seed the client did not give is drawn at random
  bool stream = false;
  bool ignore_eos = false;  // llama.cpp's field: go on past the end of the utterance
};

// POST /completion, in the fields of llama.cpp's server: prompt, n_predict (-1: up to the
// server's limit), temperature (0: greedy), top_k, top_p, seed (-1: random), stream; plus
// speaker and ignore_eos. Fields it does not know are ignored, as llama.cpp does.
CompletionRequest parse_completion(const std::string& body, const RequestLimits& limits);

// POST /v1/completions, OpenAI's legacy completions: prompt (a string or a list of them),
// max_tokens (default 16), temperature (default 1), top_p, n, stream, seed.
CompletionRequest parse_openai_completion(const std::string& body, const RequestLimits& limits);

// POST /attention: either a text ("prompt", with an optional "speaker") or token ids ("tokens").
struct AttentionRequest {
  std::string prompt;
  std::string speaker;
  std::optional<std::vector<TokenId>> tokens;
};
AttentionRequest parse_attention(const std::string& body, const RequestLimits& limits, int64_t vocab_size);

}  // namespace dracarys
