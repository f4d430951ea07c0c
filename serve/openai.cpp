// OpenAI's two routes: /v1/completions (texts in, texts out) and /v1/chat/completions, where
// the messages are the lines of a scene and the answer is the next line, spoken by the
// request's `speaker` (else the server's --assistant-name, else whoever the model picks).
#include <httplib.h>

#include "data/corpus.h"
#include "serve/responses.h"
#include "serve/server.h"

namespace dracarys {

namespace {

// One choice of /v1/completions: the text (after the echoed prompt), and its log-probabilities.
json completion_choice(const CompletionResult& result, size_t index, const std::string& echoed, bool logprobs,
                       const Tokenizer& tokenizer) {
  json choice = openai_choice(echoed + result.text, index, finish_reason(result));
  if (logprobs) choice["logprobs"] = openai_logprobs(result.logprobs, tokenizer, echoed.size());
  return choice;
}

}  // namespace

// OpenAI's /v1/completions: whole, with the usage counts, or streamed as chunks then [DONE].
void Server::handle_openai_completion(const CompletionRequest& r, std::shared_ptr<Admission::Ticket> ticket,
                                      httplib::Response& res) {
  say_if_clamped(r, res);
  const std::string id = openai_id();
  const bool logprobs = r.top_logprobs >= 0;
  // The echoed prompt of each choice: its text as given (or as its ids decode).
  std::vector<std::string> echoes;
  for (const auto& p : r.prompts)
    for (int64_t c = 0; c < r.choices; ++c)
      echoes.push_back(!r.echo ? "" : p.ids ? m_.tokenizer.decode(*p.ids) : p.text);
  if (!r.stream) {
    json choices = json::array();
    int64_t prompt_tokens = 0, completion_tokens = 0;
    complete_all(
        r, [](size_t, const CompletionPiece&) { return true; },
        [&](size_t index, const CompletionResult& result) {
          choices.push_back(completion_choice(result, index, echoes[index], logprobs, m_.tokenizer));
          prompt_tokens += static_cast<int64_t>(result.prompt_ids.size());
          completion_tokens += static_cast<int64_t>(result.ids.size());
          return true;
        });
    auto j = openai_json(id, o_.model_name, choices);
    j["usage"] = {{"prompt_tokens", prompt_tokens},
                  {"completion_tokens", completion_tokens},
                  {"total_tokens", prompt_tokens + completion_tokens}};
    return send_json(res, j);
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [this, r, id, echoes, logprobs, ticket](size_t, httplib::DataSink& sink) {
        auto chunk = [&](json choice) {
          return send_event(sink, dump(openai_json(id, o_.model_name, {std::move(choice)})));
        };
        std::vector<bool> started(echoes.size(), false);
        const bool finished = complete_all(
            r,
            [&](size_t index, const CompletionPiece& p) {
              json choice = openai_choice((started[index] ? "" : echoes[index]) + p.text, index, nullptr);
              if (logprobs) choice["logprobs"] = openai_logprobs(p.logprobs, m_.tokenizer, 0);
              started[index] = true;
              return chunk(std::move(choice));
            },
            [&](size_t index, const CompletionResult& result) {
              return chunk(openai_choice(started[index] ? "" : echoes[index], index, finish_reason(result)));
            });
        if (!finished || !send_event(sink, "[DONE]")) return false;
        sink.done();
        return true;
      });
}

std::vector<TokenId> Server::chat_prompt(const ChatRequest& r, std::string& answering) const {
  // The scene as training saw it: each line after the end of the one before.
  std::vector<TokenId> ids = {m_.tokenizer.eos_id()};
  for (const auto& message : r.messages) {
    std::string name =
        message.name.empty() ? (message.role == "user" ? o_.user_name : o_.assistant_name) : message.name;
    const std::string line = name.empty() || !m_.speaker_prefix ? message.content : speaker_line(name, message.content);
    const auto line_ids = m_.tokenizer.encode(line);
    ids.insert(ids.end(), line_ids.begin(), line_ids.end());
    ids.push_back(m_.tokenizer.eos_id());
  }
  answering = !r.completion.speaker.empty() ? r.completion.speaker : o_.assistant_name;
  if (!answering.empty() && m_.speaker_prefix) {
    // "name:" without the space after it, which the line's first token brings (as in training)
    std::string prefix_text = speaker_line(answering, "");
    while (!prefix_text.empty() && prefix_text.back() == ' ') prefix_text.pop_back();
    const auto prefix = m_.tokenizer.encode(prefix_text);
    ids.insert(ids.end(), prefix.begin(), prefix.end());
  }
  return ids;
}

namespace {

// Splits "name: text" when the model chose the speaker itself (the answer's start holds it);
// when the request named the speaker, the answer starts with the space after "name:".
void take_speaker(std::string& name, std::string& content) {
  if (!name.empty()) {
    if (!content.empty() && content.front() == ' ') content.erase(0, 1);
    return;
  }
  auto [speaker, text] = split_speaker_line(content);
  if (speaker.empty()) return;
  name = speaker;
  content = text;
}

json chat_message(const std::string& name, const std::string& content) {
  json message = {{"role", "assistant"}, {"content", content}};
  if (!name.empty()) message["name"] = name;
  return message;
}

}  // namespace

// OpenAI's /v1/chat/completions, whole or streamed as chat.completion.chunk events.
void Server::handle_chat(const ChatRequest& r, std::shared_ptr<Admission::Ticket> ticket, httplib::Response& res) {
  say_if_clamped(r.completion, res);
  std::string answering;
  const auto prompt = chat_prompt(r, answering);
  const bool pick_speaker = answering.empty() && m_.speaker_prefix;
  const std::string id = openai_id("chatcmpl");
  CompletionRequest scene = r.completion;
  scene.prompts = {PromptInput{"", prompt}};
  scene.speaker.clear();
  const bool logprobs = scene.top_logprobs >= 0;
  if (!r.completion.stream) {
    json choices = json::array();
    int64_t prompt_tokens = 0, completion_tokens = 0;
    complete_all(
        scene, [](size_t, const CompletionPiece&) { return true; },
        [&](size_t index, const CompletionResult& result) {
          std::string name = answering, content = result.text;
          take_speaker(name, content);
          json choice = {{"index", index},
                         {"message", chat_message(name, content)},
                         {"finish_reason", finish_reason(result)},
                         {"logprobs", nullptr}};
          if (logprobs) choice["logprobs"] = chat_logprobs(result.logprobs, m_.tokenizer);
          choices.push_back(std::move(choice));
          prompt_tokens += static_cast<int64_t>(result.prompt_ids.size());
          completion_tokens += static_cast<int64_t>(result.ids.size());
          return true;
        });
    auto j = openai_json(id, o_.model_name, choices, "chat.completion");
    j["usage"] = {{"prompt_tokens", prompt_tokens},
                  {"completion_tokens", completion_tokens},
                  {"total_tokens", prompt_tokens + completion_tokens}};
    return send_json(res, j);
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("text/event-stream", [this, scene, id, answering, pick_speaker, logprobs, ticket](
                                                            size_t, httplib::DataSink& sink) {
    auto chunk = [&](size_t index, json delta, const json& finish, const json& lp) {
      json choice = {{"index", index}, {"delta", std::move(delta)}, {"finish_reason", finish}, {"logprobs", lp}};
      return send_event(sink, dump(openai_json(id, o_.model_name, {std::move(choice)}, "chat.completion.chunk")));
    };
    // Each choice opens with its role (and name); when the model picks the speaker, its text is
    // held until the name is complete.
    std::vector<std::string> held(static_cast<size_t>(scene.choices));
    std::vector<bool> opened(held.size(), false);
    auto open = [&](size_t index, std::string text, const json& lp) {
      std::string name = answering;
      take_speaker(name, text);
      opened[index] = true;
      json delta = {{"role", "assistant"}, {"content", text}};
      if (!name.empty()) delta["name"] = name;
      return chunk(index, std::move(delta), nullptr, lp);
    };
    const bool finished = complete_all(
        scene,
        [&](size_t index, const CompletionPiece& p) {
          const json lp = logprobs ? chat_logprobs(p.logprobs, m_.tokenizer) : json();
          if (opened[index]) return chunk(index, {{"content", p.text}}, nullptr, lp);
          held[index] += p.text;
          if (pick_speaker && held[index].find(": ") == std::string::npos) return true;
          return open(index, std::move(held[index]), lp);
        },
        [&](size_t index, const CompletionResult& result) {
          if (!opened[index] && !open(index, std::move(held[index]), nullptr)) return false;
          return chunk(index, json::object(), finish_reason(result), nullptr);
        });
    if (!finished || !send_event(sink, "[DONE]")) return false;
    sink.done();
    return true;
  });
}

}  // namespace dracarys
