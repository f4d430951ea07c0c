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

// The scene as training saw it: each line after the end of the one before.
std::vector<TokenId> Server::chat_scene(const ChatRequest& r) const {
  std::vector<TokenId> ids = {m_.tokenizer.eos_id()};
  for (const auto& message : r.messages) {
    std::string name =
        message.name.empty() ? (message.role == "user" ? o_.user_name : o_.assistant_name) : message.name;
    const std::string line = name.empty() || !m_.speaker_prefix ? message.content : speaker_line(name, message.content);
    const auto line_ids = m_.tokenizer.encode(line);
    ids.insert(ids.end(), line_ids.begin(), line_ids.end());
    ids.push_back(m_.tokenizer.eos_id());
  }
  return ids;
}

// Who says the answer: the request's speaker, else --assistant-name, else one the model picks
// among the checkpoint's speakers (with the choice's sampling); empty where the model writes
// the name itself (a checkpoint that lists no speakers) or was trained without names.
std::string Server::chat_speaker(const ChatRequest& r, const std::vector<TokenId>& scene,
                                 const SamplingOptions& sampling) {
  if (!m_.speaker_prefix) return "";
  if (!r.completion.speaker.empty()) return r.completion.speaker;
  if (!o_.assistant_name.empty()) return o_.assistant_name;
  return speaker_names_.empty() ? "" : speaker_names_.pick(m_, scene, sampling);
}

// Each choice of a chat: its speaker (names[index], set before its first piece), then its line
// after "name:" (the space after it comes with the line's first token, as in training), ending
// where another listed speaker's "name:" would begin.
bool Server::complete_chat(const ChatRequest& r, std::vector<std::string>& names, const ChoicePiece& on_piece,
                           const ChoiceEnd& on_end) {
  const auto scene = chat_scene(r);
  names.assign(static_cast<size_t>(r.completion.choices), "");
  for (size_t index = 0; index < names.size(); ++index) {
    CompletionOptions options = options_of(r.completion);
    options.sampling.seed += static_cast<uint64_t>(index);
    names[index] = chat_speaker(r, scene, options.sampling);
    auto prompt = scene;
    if (!names[index].empty()) {
      const auto opening = m_.tokenizer.encode(speaker_line(names[index], ""));
      prompt.insert(prompt.end(), opening.begin(), opening.end());
      const auto& others = speaker_names_.openings();
      options.stop.insert(options.stop.end(), others.begin(), others.end());
    }
    auto result = complete(prompt, options, [&](const CompletionPiece& p) { return on_piece(index, p); });
    if (result.cancelled || !on_end(index, result)) return false;
  }
  return true;
}

namespace {

// Splits "name: text" when the model wrote the speaker itself (the answer's start holds it);
// when the speaker was known, the answer starts with the space after "name:", which goes.
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

// OpenAI's /v1/chat/completions, whole or streamed as chat.completion.chunk events. The
// log-probabilities and the usage count the tokens of `content` (the speaker's are the prompt's).
void Server::handle_chat(const ChatRequest& r, std::shared_ptr<Admission::Ticket> ticket, httplib::Response& res) {
  say_if_clamped(r.completion, res);
  const std::string id = openai_id("chatcmpl");
  const bool logprobs = r.completion.top_logprobs >= 0;
  if (!r.completion.stream) {
    json choices = json::array();
    int64_t prompt_tokens = 0, completion_tokens = 0;
    std::vector<std::string> names;
    complete_chat(
        r, names, [](size_t, const CompletionPiece&) { return true; },
        [&](size_t index, const CompletionResult& result) {
          std::string name = names[index], content = result.text;
          take_speaker(name, content);
          json choice = {{"index", index},
                         {"message", chat_message(name, content)},
                         {"finish_reason", finish_reason(result)},
                         {"logprobs", nullptr}};
          if (logprobs) choice["logprobs"] = chat_logprobs(result.logprobs, m_.tokenizer, !names[index].empty());
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
  res.set_chunked_content_provider(
      "text/event-stream", [this, r, id, logprobs, ticket](size_t, httplib::DataSink& sink) {
        auto chunk = [&](size_t index, json delta, const json& finish, const json& lp) {
          json choice = {{"index", index}, {"delta", std::move(delta)}, {"finish_reason", finish}, {"logprobs", lp}};
          return send_event(sink, dump(openai_json(id, o_.model_name, {std::move(choice)}, "chat.completion.chunk")));
        };
        // Each choice opens with its role and name; where the model writes the name itself, its
        // text is held until the name is complete.
        std::vector<std::string> names, held(static_cast<size_t>(r.completion.choices));
        std::vector<bool> opened(held.size(), false), scored(held.size(), false);
        auto open = [&](size_t index, std::string text, const json& lp) {
          std::string name = names[index];
          take_speaker(name, text);
          opened[index] = true;
          json delta = {{"role", "assistant"}, {"content", text}};
          if (!name.empty()) delta["name"] = name;
          return chunk(index, std::move(delta), nullptr, lp);
        };
        const bool finished = complete_chat(
            r, names,
            [&](size_t index, const CompletionPiece& p) {
              json lp;
              if (logprobs) lp = chat_logprobs(p.logprobs, m_.tokenizer, !scored[index] && !names[index].empty());
              if (!p.logprobs.empty()) scored[index] = true;
              if (opened[index]) return chunk(index, {{"content", p.text}}, nullptr, lp);
              held[index] += p.text;
              if (names[index].empty() && m_.speaker_prefix && held[index].find(": ") == std::string::npos) return true;
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
