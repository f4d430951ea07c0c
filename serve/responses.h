// What dracarys-serve answers, as JSON: llama.cpp's and OpenAI's completion shapes, the
// attention weights, errors, and server-sent events. The requests they answer are read in
// serve/requests.h.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/report.h"
#include "engine/attention_weights.h"
#include "engine/completion.h"

namespace dracarys {

using nlohmann::json;

// JSON text of `j` (cli/report.h's dump_json: bytes that are not UTF-8 become U+FFFD).
inline std::string dump(const json& j) { return dump_json(j); }

void send_json(httplib::Response& res, const json& j, int status = 200);

// Every error: {"error": {"code", "message", "type", "param"}}.
void send_error(httplib::Response& res, int status, const std::string& message, const std::string& field = "");

// One server-sent event; false when the client is gone.
bool send_event(httplib::DataSink& sink, const std::string& data);

// llama.cpp's /completion answer (also the last event of a stream, whose content is then "").
json completion_json(const CompletionResult& r, const std::string& model, bool with_content);

// OpenAI's finish_reason: "stop" at the end of the utterance, else "length".
std::string finish_reason(const CompletionResult& r);

// OpenAI's chunk or answer skeleton, and one of its choices.
json openai_json(const std::string& id, const std::string& model, json choices);
json openai_choice(const std::string& text, size_t index, const json& finish);
// A fresh "cmpl-…" id.
std::string openai_id();

// /attention: the tokens, and weights[layer][head][t] holding query t's t + 1 weights over the
// tokens 0..t (the causal mask hides the rest).
json attention_json(const AttentionMaps& maps);

}  // namespace dracarys
