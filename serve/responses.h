// What dracarys-serve answers, as JSON: llama.cpp's and OpenAI's completion shapes, the
// attention weights, errors, and server-sent events. The requests they answer are read in
// serve/requests.h.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/report.h"
#include "engine/attention_boxes.h"
#include "engine/attention_weights.h"
#include "engine/completion.h"
#include "engine/probe.h"
#include "serve/requests.h"

namespace dracarys {

using nlohmann::json;

// JSON text of `j` (cli/report.h's dump_json: bytes that are not UTF-8 become U+FFFD).
inline std::string dump(const json& j) { return dump_json(j); }

void send_json(httplib::Response& res, const json& j, int status = 200);

// Every error: {"error": {"code", "message", "type", "param"}}.
void send_error(httplib::Response& res, int status, const std::string& message, const std::string& field = "");

// What a failure no handler expected says: to the client, a few words of ours ("out of memory",
// "an internal error"); to the log, the first line of the exception's text, without LibTorch's
// stack frames.
struct FailureText {
  std::string for_client, for_log;
};
FailureText failure_text(std::exception_ptr failure);

// A token count above the server's --max-tokens was clamped to it (CompletionRequest::asked_tokens):
// the response says so in the header X-Max-Tokens-Clamped ("512; asked 1000").
void say_if_clamped(const CompletionRequest& r, httplib::Response& res);

// One server-sent event; false when the client is gone.
bool send_event(httplib::DataSink& sink, const std::string& data);

// llama.cpp's /completion answer (also the last event of a stream, whose content is then "").
json completion_json(const CompletionResult& r, const std::string& model, bool with_content,
                     const Tokenizer& tokenizer);

// llama.cpp's completion_probabilities: per token, its id, text and log-probability, and the
// top alternatives'.
json llama_probabilities(const std::vector<TokenLogprob>& logprobs, const Tokenizer& tokenizer);
// OpenAI's legacy logprobs object: tokens, token_logprobs, top_logprobs, text_offset (counted
// from `offset`, the length of any echoed prompt).
json openai_logprobs(const std::vector<TokenLogprob>& logprobs, const Tokenizer& tokenizer, size_t offset);
// OpenAI's chat logprobs: {"content": [{token, logprob, bytes, top_logprobs}]}. With
// `opens_line`, the first token's leading space (the one after "name:", which `content` leaves
// out) is left out too, so that the tokens join to `content`.
json chat_logprobs(const std::vector<TokenLogprob>& logprobs, const Tokenizer& tokenizer, bool opens_line);

// OpenAI's finish_reason: "stop" at the end of the utterance, else "length".
std::string finish_reason(const CompletionResult& r);

// OpenAI's chunk or answer skeleton (object "text_completion", "chat.completion" or
// "chat.completion.chunk"), and one of its choices.
json openai_json(const std::string& id, const std::string& model, json choices,
                 const std::string& object = "text_completion");
json openai_choice(const std::string& text, size_t index, const json& finish);
// A fresh "cmpl-…" (or "chatcmpl-…") id.
std::string openai_id(const std::string& prefix = "cmpl");

// GET /v1/models's entry for the one model served.
json model_json(const std::string& name);

// /attention: the tokens, and weights[layer][head][t] holding query t's t + 1 weights over the
// tokens 0..t (the causal mask hides the rest).
json attention_json(const AttentionMaps& maps);

// /trace: the tokens, and one head's boxes in the guide's order, each {name, title, says, rows,
// cols, shape: [rows, cols], values: rows of numbers}, the mask's -inf as null. The numbers are
// the model's float32 values, printed as the shortest text that reads back to the same float.
json trace_json(const TracedSequence& s, const std::vector<AttentionBox>& boxes, int64_t layer, int64_t head);

// /probe: the probe line's tokens and its snapshots, each {step, val_loss (null: none),
// filters[layer][head][t] holding query t's t + 1 weights}.
json probe_json(const ProbeRecord& record);

}  // namespace dracarys
