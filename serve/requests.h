// What a client may ask dracarys-serve for, read from untrusted JSON bodies: every field is
// checked for its type and range, and a bad one is refused with an error naming it (HTTP 400).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/config.h"
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

// A prompt as a client gives it: a text, or token ids (then `text` is empty).
struct PromptInput {
  std::string text;
  std::optional<std::vector<TokenId>> ids;
};

// One or more completions of one or more prompts.
struct CompletionRequest {
  std::vector<PromptInput> prompts;  // each gets `choices` completions
  std::string speaker;               // dracarys's own field: "speaker: " goes in front of each text prompt
  int64_t choices = 1;
  int64_t max_new_tokens = 0;
  int64_t asked_tokens = -1;      // what the client asked for where it was above the server's limit (then clamped)
  SamplingOptions sampling;       // a seed the client did not give is drawn at random
  std::vector<std::string> stop;  // stop sequences
  int64_t top_logprobs = -1;      // -1: none; n: each token's log-probability with n alternatives
  bool stream = false;
  bool ignore_eos = false;  // llama.cpp's field: go on past the end of the utterance
  bool echo = false;        // OpenAI's: the prompt's text in front of each completion
};

// POST /completion, in the fields of llama.cpp's server: prompt (a text or token ids),
// n_predict or max_tokens (-1: up to the server's limit), temperature (0: greedy), top_k,
// top_p, min_p, seed (-1: random), stop, repeat_penalty, repeat_last_n, presence_penalty,
// frequency_penalty, n_probs, stream, ignore_eos; plus speaker. Any other field that would
// change the output is refused, naming it (kAcceptedFields lists those that change nothing).
CompletionRequest parse_completion(const std::string& body, const RequestLimits& limits, int64_t vocab_size);

// POST /v1/completions, OpenAI's legacy completions: prompt (a text, a list of texts, token
// ids, or a list of those), max_tokens (default 16), temperature (default 1), top_p, n, stop,
// logprobs, echo, presence_penalty, frequency_penalty, seed, stream; plus speaker.
CompletionRequest parse_openai_completion(const std::string& body, const RequestLimits& limits, int64_t vocab_size);

// One message of a chat: `name` is its speaker (the server's default for its role when absent).
struct ChatMessage {
  std::string role;  // "user" or "assistant"
  std::string name;
  std::string content;
};

// POST /v1/chat/completions: messages, and the fields of /v1/completions but prompt, echo and
// the form of logprobs (true, with top_logprobs); plus speaker, who answers (else the model
// picks). A "system" message is refused: the model knows only lines that characters speak.
struct ChatRequest {
  std::vector<ChatMessage> messages;
  CompletionRequest completion;  // its prompts stay empty; speaker: who answers
};
ChatRequest parse_chat(const std::string& body, const RequestLimits& limits);

// POST /tokenize {"content", "with_pieces"} and POST /detokenize {"tokens"}, as llama.cpp's.
struct TokenizeRequest {
  std::string content;
  bool with_pieces = false;
};
TokenizeRequest parse_tokenize(const std::string& body, const RequestLimits& limits);
std::vector<TokenId> parse_detokenize(const std::string& body, const RequestLimits& limits, int64_t vocab_size);

// Fields every route accepts and ignores because they change nothing here (the README lists
// them): user, cache_prompt, id_slot, stream_options.
extern const std::vector<std::string> kAcceptedFields;

// POST /attention and /trace work out every head's T x T weights, and /attention sends them all:
// both grow as layers x heads x tokens^2. The most tokens they take for `model`, so that this
// stays under kMaxAttentionCells (about 40 MB of reply, under 1 GB of working memory).
constexpr int64_t kMaxAttentionCells = int64_t{1} << 23;
int64_t max_attention_tokens(const ModelConfig& model);

// POST /attention: either a text ("prompt", with an optional "speaker") or token ids ("tokens").
struct AttentionRequest {
  std::string prompt;  // not empty
  std::string speaker;
  std::optional<std::vector<TokenId>> tokens;
};
AttentionRequest parse_attention(const std::string& body, const RequestLimits& limits, int64_t vocab_size);

// POST /trace: the same text or ids, and the layer and head whose boxes to return (0 unless given).
struct TraceRequest {
  AttentionRequest input;
  int64_t layer = 0, head = 0;
};
TraceRequest parse_trace(const std::string& body, const RequestLimits& limits, const ModelConfig& model);

}  // namespace dracarys
