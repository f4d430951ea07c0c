#include "serve/responses.h"

#include <c10/util/Exception.h>

#include "cli/logging.h"

#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>

namespace dracarys {

namespace {

double ms(double seconds) { return seconds * 1e3; }

// A float as the double whose shortest text is the float's shortest text ("0.1", not
// "0.10000000149011612"): the same number, a third of the bytes. Infinities become null.
json shortest(float x) {
  if (!std::isfinite(x)) return nullptr;
  char text[32];
  const auto end = std::to_chars(text, text + sizeof text, x).ptr;
  *end = 0;
  return std::strtod(text, nullptr);
}

json tokens_json(const std::vector<TokenId>& ids, const std::vector<std::string>& pieces) {
  json tokens = json::array();
  for (size_t t = 0; t < ids.size(); ++t) tokens.push_back({{"id", ids[t]}, {"piece", pieces[t]}});
  return tokens;
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

void send_json(httplib::Response& res, const json& j, int status) {
  res.status = status;
  res.set_content(dump(j), "application/json; charset=utf-8");
}

void say_if_clamped(const CompletionRequest& r, httplib::Response& res) {
  if (r.asked_tokens >= 0)
    res.set_header("X-Max-Tokens-Clamped",
                   std::to_string(r.max_new_tokens) + "; asked " + std::to_string(r.asked_tokens));
}

FailureText failure_text(std::exception_ptr failure) {
  auto first_line = [](const std::string& s) { return s.substr(0, s.find('\n')); };
  try {
    std::rethrow_exception(failure);
  } catch (const c10::Error& e) {
    const std::string line = first_line(e.what_without_backtrace());
    if (is_out_of_memory(e)) return {"out of memory", "out of memory: " + line};
    return {"an internal error; the server's log has it", "LibTorch: " + line};
  } catch (const std::exception& e) {
    if (is_out_of_memory(e)) return {"out of memory", "out of memory"};
    return {"an internal error; the server's log has it", first_line(e.what())};
  } catch (...) {
  }
  return {"an internal error", "an exception of unknown type"};
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& field) {
  const char* type = status == 401   ? "authentication_error"
                     : status == 503 ? "unavailable_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  send_json(
      res,
      {{"error",
        {{"code", status}, {"message", message}, {"type", type}, {"param", field.empty() ? json() : json(field)}}}},
      status);
}

bool send_event(httplib::DataSink& sink, const std::string& data) {
  const std::string event = "data: " + data + "\n\n";
  return sink.write(event.data(), event.size());
}

json completion_json(const CompletionResult& r, const std::string& model, bool with_content,
                     const Tokenizer& tokenizer) {
  const auto& st = r.stats;
  const auto predicted = static_cast<int64_t>(r.ids.size());  // the end token is not one of them
  json j = {{"content", with_content ? r.text : ""},
            {"stop", true},
            {"model", model},
            {"tokens", r.ids},
            {"prompt_tokens", r.prompt_ids},
            {"tokens_predicted", r.ids.size()},
            {"tokens_evaluated", r.prompt_ids.size()},
            {"truncated", st.prompt_truncated},
            {"stopped_eos", r.stopped_by_end},
            {"stopped_word", !r.stopped_by_word.empty()},
            {"stopping_word", r.stopped_by_word},
            {"stopped_limit", !r.stopped() && !r.cancelled},
            {"timings",
             {{"prompt_n", st.prompt_tokens},
              {"prompt_ms", ms(st.prompt_seconds)},
              {"predicted_n", predicted},
              {"predicted_ms", ms(st.generate_seconds)},
              {"predicted_per_second", predicted / std::max(st.generate_seconds, 1e-9)}}}};
  if (!r.logprobs.empty() && with_content) j["completion_probabilities"] = llama_probabilities(r.logprobs, tokenizer);
  return j;
}

namespace {
// A token's own text, as OpenAI's fields show it: sentencepiece's "▁" is the space it stands
// for, and a byte-fallback piece "<0xE2>" is that byte (possibly part of a character).
std::string piece_text(const Tokenizer& tokenizer, TokenId id) {
  std::string piece = tokenizer.piece(id);
  if (piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>')
    return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
  for (size_t at; (at = piece.find("\xE2\x96\x81")) != std::string::npos;) piece.replace(at, 3, " ");
  return piece;
}
json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}
}  // namespace

json llama_probabilities(const std::vector<TokenLogprob>& logprobs, const Tokenizer& tokenizer) {
  json out = json::array();
  for (const auto& lp : logprobs) {
    json top = json::array();
    for (const auto& [id, logprob] : lp.top)
      top.push_back({{"id", id}, {"token", piece_text(tokenizer, id)}, {"logprob", logprob}});
    out.push_back(
        {{"id", lp.id}, {"token", piece_text(tokenizer, lp.id)}, {"logprob", lp.logprob}, {"top_logprobs", top}});
  }
  return out;
}

json openai_logprobs(const std::vector<TokenLogprob>& logprobs, const Tokenizer& tokenizer, size_t offset) {
  json tokens = json::array(), values = json::array(), tops = json::array(), offsets = json::array();
  for (const auto& lp : logprobs) {
    const std::string text = piece_text(tokenizer, lp.id);
    tokens.push_back(text);
    values.push_back(lp.logprob);
    json top = json::object();
    for (const auto& [id, logprob] : lp.top) top[piece_text(tokenizer, id)] = logprob;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += text.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json chat_logprobs(const std::vector<TokenLogprob>& logprobs, const Tokenizer& tokenizer, bool opens_line) {
  json content = json::array();
  for (const auto& lp : logprobs) {
    std::string text = piece_text(tokenizer, lp.id);
    if (opens_line && content.empty() && !text.empty() && text.front() == ' ') text.erase(0, 1);
    json top = json::array();
    for (const auto& [id, logprob] : lp.top) {
      const std::string alternative = piece_text(tokenizer, id);
      top.push_back({{"token", alternative}, {"logprob", logprob}, {"bytes", bytes_of(alternative)}});
    }
    content.push_back({{"token", text}, {"logprob", lp.logprob}, {"bytes", bytes_of(text)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

std::string finish_reason(const CompletionResult& r) { return r.stopped() ? "stop" : "length"; }

json openai_json(const std::string& id, const std::string& model, json choices, const std::string& object) {
  return {{"id", id}, {"object", object}, {"created", unix_time()}, {"model", model}, {"choices", choices}};
}

json openai_choice(const std::string& text, size_t index, const json& finish) {
  return {{"text", text}, {"index", index}, {"logprobs", nullptr}, {"finish_reason", finish}};
}

std::string openai_id(const std::string& prefix) {
  static std::atomic<uint64_t> counter{0};
  return prefix + "-" + std::to_string(unix_time()) + "-" + std::to_string(++counter);
}

json model_json(const std::string& name) {
  return {{"id", name}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "dracarys"}};
}

json attention_json(const AttentionMaps& maps) {
  const json tokens = tokens_json(maps.ids, maps.tokens);
  json layers = json::array();
  for (const auto& layer : maps.layers) {  // [heads, T, T]
    json heads = json::array();
    for (int64_t h = 0; h < layer.size(0); ++h) {
      const auto w = layer.select(0, h);
      const float* data = w.data_ptr<float>();
      const int64_t T = w.size(0);
      json rows = json::array();
      for (int64_t t = 0; t < T; ++t) rows.push_back(std::vector<float>(data + t * T, data + t * T + t + 1));
      heads.push_back(std::move(rows));
    }
    layers.push_back(std::move(heads));
  }
  return {{"tokens", tokens},
          {"layers", maps.layers.size()},
          {"heads", maps.layers.empty() ? 0 : maps.layers[0].size(0)},
          {"weights", layers}};
}

json trace_json(const TracedSequence& s, const std::vector<AttentionBox>& boxes, int64_t layer, int64_t head) {
  json out_boxes = json::array();
  for (const auto& b : boxes) {
    const int64_t rows = b.values.size(0), cols = b.values.size(1);
    const float* data = b.values.data_ptr<float>();
    json values = json::array();
    for (int64_t r = 0; r < rows; ++r) {
      json row = json::array();
      for (int64_t c = 0; c < cols; ++c) row.push_back(shortest(data[r * cols + c]));
      values.push_back(std::move(row));
    }
    out_boxes.push_back({{"name", b.name},
                         {"title", b.title},
                         {"says", b.says},
                         {"rows", b.rows},
                         {"cols", b.cols},
                         {"shape", {rows, cols}},
                         {"values", std::move(values)}});
  }
  const auto& first = s.layers.front();
  return {{"tokens", tokens_json(s.ids, s.tokens)},
          {"layer", layer},
          {"head", head},
          {"layers", s.layers.size()},
          {"heads", first.q.size(0)},
          {"d_model", first.input.size(1)},
          {"d_k", first.q.size(2)},
          {"boxes", std::move(out_boxes)}};
}

json probe_json(const ProbeRecord& record) {
  const int64_t T = record.tokens();
  json snapshots = json::array();
  for (const auto& snap : record.snapshots) {
    json layers = json::array();
    for (int64_t l = 0; l < record.layers; ++l) {
      json heads = json::array();
      for (int64_t h = 0; h < record.heads; ++h) {
        json rows = json::array();
        const float* w = snap.filters.data() + (l * record.heads + h) * T * T;
        for (int64_t t = 0; t < T; ++t) {
          json row = json::array();
          for (int64_t k = 0; k <= t; ++k) row.push_back(shortest(w[t * T + k]));
          rows.push_back(std::move(row));
        }
        heads.push_back(std::move(rows));
      }
      layers.push_back(std::move(heads));
    }
    snapshots.push_back({{"step", snap.step},
                         {"val_loss", std::isnan(snap.val_loss) ? json(nullptr) : json(snap.val_loss)},
                         {"filters", std::move(layers)}});
  }
  return {{"text", record.text},
          {"tokens", tokens_json(record.ids, record.pieces)},
          {"layers", record.layers},
          {"heads", record.heads},
          {"snapshots", std::move(snapshots)}};
}

}  // namespace dracarys
