// dracarys-serve through a real HTTP client, against a server this test starts on 127.0.0.1
// with a tiny checkpoint it trains: completions (plain, streamed, OpenAI's form), attention
// equal to the model's own weights, every kind of malformed request, the limits, the queue,
// a client that hangs up mid-stream, the API key, the page, and a clean stop on SIGTERM.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "cli_util.h"
#include "engine/attention_boxes.h"
#include "engine/attention_weights.h"
#include "engine/loaded_model.h"
#include "engine/probe.h"
#include "serve/requests.h"
#include "serve/responses.h"
#include "serve_util.h"

using namespace dracarys;
using namespace dracarys::testing;
using nlohmann::json;

namespace {

const std::string kServe = std::string(DRACARYS_BIN_DIR) + "/dracarys-serve";

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    std::string error;
    ckpt_ = train_scene_model(*dir_, nullptr, &error);
    ASSERT_FALSE(ckpt_.empty()) << error;
    server_ = new ServerProcess;
    ASSERT_TRUE(server_->start(kServe,
                               {"-c", ckpt_, "--parallel", "2", "--queue", "1", "--max-tokens", "1000000",
                                "--max-prompt-bytes", "200", "--max-body-bytes", "4096", "--max-choices", "4"},
                               dir_->file("serve.log")));
  }
  static void TearDownTestSuite() {
    if (server_) {
      const int status = server_->stop(SIGTERM);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << server_->log();
      EXPECT_NE(server_->log().find("stopping"), std::string::npos) << server_->log();
      delete server_;
    }
    delete dir_;
  }

  static httplib::Client client() {
    httplib::Client c("127.0.0.1", server_->port);
    c.set_read_timeout(60);
    return c;
  }
  // POSTs JSON; the status and the parsed answer (null when it is not JSON).
  static std::pair<int, json> post(const std::string& path, const std::string& body) {
    auto c = client();
    auto res = c.Post(path.c_str(), body, "application/json");
    if (!res) return {-1, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }
  // POSTs a streaming request and collects its server-sent events' data.
  static std::vector<std::string> events(const std::string& path, const json& body,
                                         std::string* content_type = nullptr) {
    auto c = client();
    httplib::Request req;
    req.method = "POST";
    req.path = path;
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    std::string raw;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      raw.append(data, n);
      return true;
    };
    auto res = c.send(req);
    EXPECT_TRUE(res) << "no answer";
    if (!res) return {};
    EXPECT_EQ(res->status, 200);
    if (content_type) *content_type = res->get_header_value("Content-Type");
    std::vector<std::string> out;
    for (size_t at = 0, end; (end = raw.find("\n\n", at)) != std::string::npos; at = end + 2) {
      const std::string event = raw.substr(at, end - at);
      EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
      out.push_back(event.substr(6));
    }
    return out;
  }
  static json health() {
    auto c = client();
    auto res = c.Get("/health");
    return res ? json::parse(res->body, nullptr, false) : json();
  }
  // Waits (at most 30 s) until /health says `running` requests run and `waiting` wait.
  static bool wait_for(int running, int waiting) {
    for (int i = 0; i < 600; ++i) {
      const auto h = health();
      if (h.is_object() && h["slots_processing"] == running && h["requests_waiting"] == waiting) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  static TempDir* dir_;
  static std::string ckpt_;
  static ServerProcess* server_;
};
TempDir* Serve::dir_ = nullptr;
std::string Serve::ckpt_;
ServerProcess* Serve::server_ = nullptr;

// A raw connection that starts a stream, reads its first event and can then hang up: what a
// browser tab closed mid-completion does.
class RawStream {
 public:
  RawStream(int port, const std::string& body) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    const std::string request =
        "POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    if (write(fd_, request.data(), request.size()) != static_cast<ssize_t>(request.size())) return;
  }
  // Reads until the first event has arrived (at most 30 s).
  bool first_event() {
    std::string got;
    char buf[1024];
    timeval tv{30, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (got.find("data: ") == std::string::npos) {
      const ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return false;
      got.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  void hang_up() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  ~RawStream() { hang_up(); }

 private:
  int fd_ = -1;
};

std::string greedy_infer(const TempDir& d, const std::string& ckpt, const std::string& prompt) {
  auto r = run(d, kInfer + " -c " + ckpt + " -p \"" + prompt + "\" --greedy --threads 1");
  EXPECT_EQ(r.code, 0) << r.err;
  return r.out.substr(0, r.out.find('\n'));
}

}  // namespace

TEST_F(Serve, CompletionEqualsWhatInferPrints) {
  const std::string prompt = "ned stark: Winter";
  auto [status, j] = post("/completion", json{{"prompt", prompt}, {"n_predict", 40}, {"temperature", 0}}.dump());
  ASSERT_EQ(status, 200) << j;
  EXPECT_EQ(j["content"], " is coming.");
  EXPECT_EQ(prompt + j["content"].get<std::string>(), greedy_infer(*dir_, ckpt_, prompt));
  EXPECT_EQ(j["stop"], true);
  EXPECT_EQ(j["stopped_eos"], true);
  EXPECT_EQ(j["tokens_predicted"], j["tokens"].size());
  EXPECT_EQ(j["tokens_evaluated"], j["prompt_tokens"].size());
  EXPECT_GT(j["timings"]["predicted_per_second"].get<double>(), 0);
  // The speaker field puts "NAME: " in front.
  auto [status2, j2] =
      post("/completion", json{{"prompt", "Winter"}, {"speaker", "ned stark"}, {"temperature", 0}}.dump());
  ASSERT_EQ(status2, 200) << j2;
  EXPECT_EQ(j2["content"], " is coming.");
}

TEST_F(Serve, StreamedPiecesMakeTheSameCompletion) {
  const json body = {{"prompt", "robert baratheon:"}, {"n_predict", 60}, {"temperature", 1.5}, {"seed", 11}};
  auto [status, whole] = post("/completion", body.dump());
  ASSERT_EQ(status, 200) << whole;
  json streamed = body;
  streamed["stream"] = true;
  std::string content_type;
  const auto data = events("/completion", streamed, &content_type);
  EXPECT_EQ(content_type.rfind("text/event-stream", 0), 0u) << content_type;
  ASSERT_GE(data.size(), 3u) << "expected several pieces and a last event";
  std::string text;
  std::vector<TokenId> ids;
  for (size_t i = 0; i + 1 < data.size(); ++i) {
    const auto e = json::parse(data[i]);
    EXPECT_EQ(e["stop"], false);
    text += e["content"].get<std::string>();
    for (auto id : e["tokens"]) ids.push_back(id.get<TokenId>());
  }
  const auto last = json::parse(data.back());
  EXPECT_EQ(last["stop"], true);
  EXPECT_EQ(last["content"], "");
  EXPECT_EQ(text, whole["content"]);
  EXPECT_EQ(json(ids), whole["tokens"]);
  EXPECT_EQ(last["tokens"], whole["tokens"]);
}

TEST_F(Serve, OpenAICompletionsPlainAndStreamed) {
  auto [status, j] = post("/v1/completions", json{{"prompt", {"ned stark: Winter", "ned stark: Someone"}},
                                                  {"max_tokens", 20},
                                                  {"temperature", 0},
                                                  {"n", 2},
                                                  {"model", "whatever"}}
                                                 .dump());
  ASSERT_EQ(status, 200) << j;
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  ASSERT_EQ(j["choices"].size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    EXPECT_EQ(j["choices"][i]["finish_reason"], "stop");
    EXPECT_EQ(j["choices"][i]["text"], i < 2 ? " is coming." : " has to be.");
  }
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
            j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());
  // max_tokens cuts it: finish_reason "length".
  auto [s2, cut] = post("/v1/completions", json{{"prompt", "ned stark: Winter"}, {"max_tokens", 1}}.dump());
  ASSERT_EQ(s2, 200) << cut;
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "length");

  const auto data = events("/v1/completions",
                           {{"prompt", "ned stark: Winter"}, {"max_tokens", 20}, {"temperature", 0}, {"stream", true}});
  ASSERT_GE(data.size(), 3u);
  EXPECT_EQ(data.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 2 < data.size(); ++i) {
    const auto e = json::parse(data[i]);
    EXPECT_EQ(e["choices"][0]["finish_reason"], nullptr);
    text += e["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(text, " is coming.");
  EXPECT_EQ(json::parse(data[data.size() - 2])["choices"][0]["finish_reason"], "stop");
}

TEST_F(Serve, AttentionEqualsTheModelsWeights) {
  const std::string text = "ned stark: Winter is coming.";
  auto [status, j] = post("/attention", json{{"prompt", text}}.dump());
  ASSERT_EQ(status, 200) << j;
  auto m = load_for_inference(ckpt_, torch::kCPU);
  const auto maps = compute_attention(m.model, m.tokenizer, text);
  const size_t T = maps.ids.size();
  ASSERT_EQ(j["tokens"].size(), T);
  ASSERT_EQ(j["layers"], maps.layers.size());
  ASSERT_EQ(j["heads"], maps.layers[0].size(0));
  for (size_t t = 0; t < T; ++t) {
    EXPECT_EQ(j["tokens"][t]["id"], maps.ids[t]);
    EXPECT_EQ(j["tokens"][t]["piece"], maps.tokens[t]);
  }
  for (size_t l = 0; l < maps.layers.size(); ++l)
    for (int64_t h = 0; h < maps.layers[l].size(0); ++h)
      for (size_t t = 0; t < T; ++t) {
        const auto& row = j["weights"][l][h][t];
        ASSERT_EQ(row.size(), t + 1);
        for (size_t k = 0; k <= t; ++k)  // bit for bit: a float survives JSON as a double
          ASSERT_EQ(row[k].get<double>(), static_cast<double>(maps.layers[l][h][t][k].item<float>()))
              << "layer " << l << " head " << h << " query " << t << " key " << k;
      }
  // Token ids give the same answer as the text they encode.
  auto [status2, by_ids] = post("/attention", json{{"tokens", maps.ids}}.dump());
  ASSERT_EQ(status2, 200) << by_ids;
  EXPECT_EQ(by_ids, j);
}

// POST /trace: one head's every box, in the guide's order, each number the model's own (the
// reference attention's intermediates, engine/attention_boxes.h, each read back to the same
// float), the mask's -inf as null.
TEST_F(Serve, TraceHasEveryBoxOfOneHeadWithTheModelsNumbers) {
  const std::string text = "ned stark: Winter is coming.";
  auto [status, j] = post("/trace", json{{"prompt", text}, {"layer", 1}, {"head", 1}}.dump());
  ASSERT_EQ(status, 200) << j;
  auto m = load_for_inference(ckpt_, torch::kCPU);
  const auto traced = trace_sequence(m.model, m.tokenizer, m.tokenizer.encode(text));
  const auto boxes = head_boxes(traced, 1, 1);
  const int64_t T = static_cast<int64_t>(traced.ids.size());
  ASSERT_EQ(j["tokens"].size(), traced.ids.size());
  EXPECT_EQ(j["layer"], 1);
  EXPECT_EQ(j["head"], 1);
  EXPECT_EQ(j["d_k"], m.model->config().head_dim());
  std::vector<std::string> names;
  for (const auto& b : j["boxes"]) names.push_back(b["name"]);
  // The scene model has the default recipe's rotary positions: Q and K are turned before Q·Kᵀ.
  const std::vector<std::string> guide = {"residual",  "input",     "q",      "k",      "v",
                                          "q_rotated", "k_rotated", "scores", "scaled", "masked",
                                          "filter",    "filtered",  "concat", "output"};
  EXPECT_EQ(names, guide);
  ASSERT_EQ(j["boxes"].size(), boxes.size());
  for (size_t n = 0; n < boxes.size(); ++n) {
    const auto& b = j["boxes"][n];
    const auto& want = boxes[n].values;
    ASSERT_EQ(b["shape"], json::array({want.size(0), want.size(1)})) << b["name"];
    EXPECT_FALSE(b["says"].get<std::string>().empty());
    for (int64_t r = 0; r < want.size(0); ++r)
      for (int64_t c = 0; c < want.size(1); ++c) {
        const float x = want[r][c].item<float>();
        const auto& got = b["values"][r][c];
        if (std::isinf(x)) {
          ASSERT_TRUE(got.is_null()) << b["name"] << " " << r << "," << c;
        } else {
          ASSERT_EQ(static_cast<float>(got.get<double>()), x) << b["name"] << " " << r << "," << c;
        }
      }
  }
  EXPECT_TRUE(j["boxes"][9]["values"][0][T - 1].is_null()) << "the mask hides the last key from the first query";
  // Ids give the same answer; a layer or head the model lacks, or a field it does not know, is refused.
  auto [status2, by_ids] = post("/trace", json{{"tokens", traced.ids}, {"layer", 1}, {"head", 1}}.dump());
  ASSERT_EQ(status2, 200);
  EXPECT_EQ(by_ids, j);
  for (const auto& [body, field] :
       std::vector<std::pair<json, std::string>>{{{{"prompt", text}, {"layer", 2}}, "layer"},
                                                 {{{"prompt", text}, {"head", -1}}, "head"},
                                                 {{{"prompt", text}, {"box", "q"}}, "box"},
                                                 {{{"prompt", ""}}, "prompt"}}) {
    auto [code, e] = post("/trace", body.dump());
    EXPECT_EQ(code, 400) << body;
    EXPECT_EQ(e["error"]["param"], field) << e;
  }
}

// GET /probe: the probe file (--probe-file, or the one beside the checkpoint), as recorded; none
// is a 404, and a damaged one is reported in the log and left out while the server runs on.
TEST_F(Serve, ProbeServesTheRecordBesideTheCheckpoint) {
  TempDir d;
  const std::string ckpt = d.file("probed.pt");
  std::filesystem::copy_file(ckpt_, ckpt);
  ServerProcess bare;
  ASSERT_TRUE(bare.start(kServe, {"-c", ckpt}, d.file("bare.log")));
  auto none = httplib::Client("127.0.0.1", bare.port).Get("/probe");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 404);
  bare.stop(SIGTERM);
  auto m = load_for_inference(ckpt_, torch::kCPU);
  auto record = start_probe(m.model, m.tokenizer, "ned stark: Winter");
  record_probe(record, m.model, 0, std::nan(""));
  record_probe(record, m.model, 50, 1.25);
  write_probe_file(d.file("elsewhere.probe"), record);  // given by --probe-file
  ServerProcess probed;
  ASSERT_TRUE(probed.start(kServe, {"-c", ckpt, "--probe-file", d.file("elsewhere.probe")}, d.file("probed.log")));
  httplib::Client c("127.0.0.1", probed.port);
  auto res = c.Get("/probe");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const auto j = json::parse(res->body);
  EXPECT_EQ(j["text"], "ned stark: Winter");
  ASSERT_EQ(j["snapshots"].size(), 2u);
  EXPECT_TRUE(j["snapshots"][0]["val_loss"].is_null());
  EXPECT_EQ(j["snapshots"][1]["val_loss"], 1.25);
  const int64_t T = record.tokens();
  for (size_t n = 0; n < 2; ++n) {
    EXPECT_EQ(j["snapshots"][n]["step"], record.snapshots[n].step);
    for (int64_t l = 0; l < record.layers; ++l)
      for (int64_t h = 0; h < record.heads; ++h)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t k = 0; k <= t; ++k)
            ASSERT_EQ(static_cast<float>(j["snapshots"][n]["filters"][l][h][t][k].get<double>()),
                      record.snapshots[n].filters[((l * record.heads + h) * T + t) * T + k]);
  }
  probed.stop(SIGTERM);
  d.write("probed.pt.probe", "DRPROBE1 and then nonsense");
  ServerProcess damaged;
  ASSERT_TRUE(damaged.start(kServe, {"-c", ckpt}, d.file("damaged.log")));
  httplib::Client c2("127.0.0.1", damaged.port);
  auto refused = c2.Get("/probe");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 404);
  damaged.stop(SIGTERM);
  EXPECT_NE(damaged.log().find("probe file"), std::string::npos) << damaged.log();
  // The probe's text is logged with its control characters escaped: none reaches a terminal.
  auto loud = start_probe(m.model, m.tokenizer, "ned stark: \x1b[2J\x1b]0;owned\x07Winter");
  record_probe(loud, m.model, 0, 1.0);
  write_probe_file(d.file("loud.probe"), loud);
  ServerProcess escaped;
  ASSERT_TRUE(escaped.start(kServe, {"-c", ckpt, "--probe-file", d.file("loud.probe")}, d.file("loud.log")));
  escaped.stop(SIGTERM);
  EXPECT_NE(escaped.log().find("\\x1b[2J"), std::string::npos) << escaped.log();
  EXPECT_EQ(escaped.log().find('\x1b'), std::string::npos);
  EXPECT_EQ(escaped.log().find('\x07'), std::string::npos);
}

TEST_F(Serve, MalformedRequestsGetAJsonErrorNamingTheField) {
  struct Case {
    std::string path, body;
    int status;
    std::string param;  // "" : the body as a whole
  };
  const std::string long_prompt(201, 'a');
  const std::vector<Case> cases = {
      {"/completion", "not json", 400, ""},
      {"/completion", "[1, 2]", 400, ""},
      {"/completion", "{}", 400, "prompt"},
      {"/completion", R"({"prompt": 7})", 400, "prompt"},
      {"/completion", R"({"prompt": "a", "n_predict": "ten"})", 400, "n_predict"},
      {"/completion", R"({"prompt": "a", "n_predict": 1.5})", 400, "n_predict"},
      {"/completion", R"({"prompt": "a", "n_predict": -2})", 400, "n_predict"},
      {"/completion", R"({"prompt": "a", "n_predict": 18446744073709551615})", 400, "n_predict"},
      {"/completion", R"({"prompt": "a", "temperature": -0.5})", 400, "temperature"},
      {"/completion", R"({"prompt": "a", "temperature": "hot"})", 400, "temperature"},
      {"/completion", R"({"prompt": "a", "top_p": 0})", 400, "top_p"},
      {"/completion", R"({"prompt": "a", "top_p": 1.5})", 400, "top_p"},
      {"/completion", R"({"prompt": "a", "top_k": -1})", 400, "top_k"},
      {"/completion", R"({"prompt": "a", "seed": -5})", 400, "seed"},
      {"/completion", R"({"prompt": "a", "stream": "yes"})", 400, "stream"},
      {"/completion", R"({"prompt": "a", "speaker": "the night king"})", 400, "speaker"},
      {"/completion", "{\"prompt\": \"\xff\"}", 400, ""},  // not UTF-8: not JSON either
      {"/completion", R"({"prompt": ")" + long_prompt + R"("})", 413, "prompt"},
      {"/v1/completions", R"({"prompt": "a", "n": 0})", 400, "n"},
      {"/v1/completions", R"({"prompt": "a", "n": 5})", 400, "n"},
      {"/v1/completions", R"({"prompt": ["a", "b", "c"], "n": 2})", 400, "n"},
      {"/v1/completions", R"({"prompt": []})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": ["a", 3]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": "a", "max_tokens": true})", 400, "max_tokens"},
      {"/attention", R"({})", 400, "prompt"},
      {"/attention", R"({"prompt": "a", "tokens": [1]})", 400, "prompt"},
      {"/attention", R"({"tokens": []})", 400, "tokens"},
      {"/attention", R"({"tokens": [1, 300]})", 400, "tokens"},
      {"/attention", R"({"tokens": [1, -1]})", 400, "tokens"},
      {"/attention", R"({"tokens": [1, "2"]})", 400, "tokens"},
      {"/completion", "{\"prompt\": \"" + std::string(5000, 'a') + "\"}", 413, ""},  // past --max-body-bytes
      {"/no-such-route", "{}", 404, ""},
  };
  for (const auto& c : cases) {
    auto [status, j] = post(c.path, c.body);
    EXPECT_EQ(status, c.status) << c.path << " " << c.body.substr(0, 80) << ": " << j;
    ASSERT_TRUE(j.is_object() && j.contains("error")) << c.path << " " << c.body.substr(0, 80) << ": " << j;
    EXPECT_EQ(j["error"]["code"], c.status);
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
    if (c.param.empty())
      EXPECT_TRUE(j["error"]["param"].is_null()) << j;
    else
      EXPECT_EQ(j["error"]["param"], c.param) << c.body.substr(0, 80);
  }
  // The messages name what is accepted and where the routes are described.
  for (const std::string prompt : {"5", "{}", "true"}) {
    auto [status, j] = post("/completion", "{\"prompt\": " + prompt + "}");
    EXPECT_NE(j["error"]["message"].get<std::string>().find("a string or a list of token ids"), std::string::npos) << j;
  }
  EXPECT_NE(post("/no-such-route", "{}").second["error"]["message"].get<std::string>().find("docs/serving.md"),
            std::string::npos);
  EXPECT_NE(post("/completion", R"({"prompt": "a", "logit_bias": {}})").second.dump().find("docs/serving.md"),
            std::string::npos);
  EXPECT_EQ(health()["status"], "ok");  // and the server is still up
}

// With both slots held by streams and the one queue place taken, the next request is turned
// away with 503; hanging up the streams frees their slots, and the waiting request is served.
// Sends `request` as raw bytes and returns the whole answer (the connection is closed after it).
static std::string raw_exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    timeval tv{30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

TEST_F(Serve, RequestFramingIsCheckedBeforeTheBodyIsRead) {
  const std::string post = "POST /completion HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  // A chunked body was read without any limit (314 MB answered 200): refused before it is read.
  auto got = raw_exchange(server_->port, post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 411", 0), 0u) << got;
  EXPECT_NE(got.find("Content-Length"), std::string::npos) << got;
  got = raw_exchange(server_->port, post + "Content-Length: -5\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
  got = raw_exchange(server_->port, post + "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
  // A form-encoded body past httplib's hidden 8 KB limit gets a message that says what to do.
  const std::string big = "{\"prompt\": \"" + std::string(9000, 'a') + "\", \"n_predict\": 1}";
  got = raw_exchange(server_->port, post + "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
                                        std::to_string(big.size()) + "\r\n\r\n" + big);
  EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got.substr(0, 300);
  EXPECT_NE(got.find("application/json"), std::string::npos) << got.substr(0, 300);
  // 1,300 ranges of the page answered 13.7 MB: ranges are not served.
  std::string ranges = "bytes=0-";
  for (int i = 1; i < 1300; ++i) ranges += ",0-";
  got = raw_exchange(server_->port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: " + ranges + "\r\n\r\n");
  EXPECT_TRUE(got.rfind("HTTP/1.1 416", 0) == 0 || got.rfind("HTTP/1.1 400", 0) == 0) << got.substr(0, 300);
  EXPECT_LT(got.size(), 4096u);
  got = raw_exchange(server_->port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: bytes=0-9\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 416", 0), 0u) << got.substr(0, 300);
  // The same JSON body as before, framed plainly, is served.
  got = raw_exchange(server_->port, post +
                                        "Content-Type: application/json\r\nContent-Length: 33\r\n\r\n"
                                        "{\"prompt\": \"x\", \"n_predict\": 1}  ");
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got.substr(0, 300);
}

// A connection that sends nothing yet (or a byte at a time).
static int open_connection(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST_F(Serve, SlowClientsNeitherStarveHealthNorOutstayTheirDeadline) {
  ServerProcess guarded;
  ASSERT_TRUE(guarded.start(kServe, {"-c", ckpt_, "--request-timeout", "3"}, dir_->file("guarded.log")));
  // Slowloris: 100 connections, each sending its request a byte at a time, twice a second.
  std::vector<int> slow;
  for (int i = 0; i < 100; ++i) slow.push_back(open_connection(guarded.port));
  std::atomic<bool> attacking{true};
  std::thread attacker([&] {
    const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    for (size_t at = 0; attacking && at < request.size(); ++at) {
      for (int fd : slow) [[maybe_unused]] auto n = send(fd, &request[at], 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
  // Throughout, /health answers within a second.
  for (int i = 0; i < 16; ++i) {
    httplib::Client c("127.0.0.1", guarded.port);
    c.set_connection_timeout(1);
    c.set_read_timeout(1);
    const auto start = std::chrono::steady_clock::now();
    auto res = c.Get("/health");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(res) << "no answer during the attack, try " << i;
    EXPECT_EQ(res->status, 200);
    EXPECT_LT(seconds, 1.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  // Past the 3-second deadline the server has closed every slow connection.
  int closed = 0;
  for (int fd : slow) {
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
    }
    closed += n == 0 || (n < 0 && errno == ECONNRESET);
  }
  attacking = false;
  attacker.join();
  for (int fd : slow) close(fd);
  EXPECT_EQ(closed, 100);
}

TEST_F(Serve, ConnectionsAreBoundedInAllAndPerClient) {
  ServerProcess bounded;
  ASSERT_TRUE(bounded.start(kServe, {"-c", ckpt_, "--max-connections", "3", "--max-connections-per-client", "3"},
                            dir_->file("bounded.log")));
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) held.push_back(open_connection(bounded.port));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the server has counted them
  auto got = raw_exchange(bounded.port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 503", 0), 0u) << got;
  EXPECT_NE(got.find("too many connections"), std::string::npos) << got;
  for (int fd : held) close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  got = raw_exchange(bounded.port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
}

TEST_F(Serve, QueueLimitAndClientsThatHangUp) {
  ASSERT_TRUE(wait_for(0, 0));
  const std::string endless =
      json{{"prompt", "ned stark:"}, {"n_predict", 1000000}, {"ignore_eos", true}, {"stream", true}}.dump();
  RawStream a(server_->port, endless), b(server_->port, endless);
  ASSERT_TRUE(a.first_event());
  ASSERT_TRUE(b.first_event());
  ASSERT_TRUE(wait_for(2, 0)) << health();

  std::atomic<int> waited_status{0};
  std::thread waiting([&] {
    waited_status = post("/completion", json{{"prompt", "ned stark: Winter"}, {"temperature", 0}}.dump()).first;
  });
  ASSERT_TRUE(wait_for(2, 1)) << health();
  auto [busy, j] = post("/completion", json{{"prompt", "a"}}.dump());
  EXPECT_EQ(busy, 503) << j;
  EXPECT_EQ(j["error"]["code"], 503);

  // A million tokens would take minutes: hanging up must end the work at once.
  a.hang_up();
  b.hang_up();
  EXPECT_TRUE(wait_for(0, 0)) << health();
  waiting.join();
  EXPECT_EQ(waited_status, 200);
}

// Each request has its own KV cache: two completions at once give what each gives alone.
TEST_F(Serve, ConcurrentRequestsEqualSequentialOnes) {
  const json x = {{"prompt", "robert baratheon:"}, {"n_predict", 80}, {"temperature", 1.2}, {"seed", 5}};
  const json y = {{"prompt", "cersei lannister: The"}, {"n_predict", 80}, {"temperature", 1.2}, {"seed", 9}};
  const auto alone_x = post("/completion", x.dump()).second, alone_y = post("/completion", y.dump()).second;
  json together_x, together_y;
  std::thread tx([&] { together_x = post("/completion", x.dump()).second; });
  std::thread ty([&] { together_y = post("/completion", y.dump()).second; });
  tx.join();
  ty.join();
  EXPECT_EQ(together_x["tokens"], alone_x["tokens"]);
  EXPECT_EQ(together_y["tokens"], alone_y["tokens"]);
  EXPECT_NE(alone_x["tokens"], alone_y["tokens"]);
}

TEST_F(Serve, PageAndPropsAndHealth) {
  auto c = client();
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type").rfind("text/html", 0), 0u);
  EXPECT_NE(page->body.find("<title>dracarys</title>"), std::string::npos);
  // Self-contained: nothing is fetched from elsewhere.
  for (const char* outside : {"src=\"http", "href=\"http", "url(http", "@import", "src=\"//"})
    EXPECT_EQ(page->body.find(outside), std::string::npos) << outside;
  auto props = c.Get("/props");
  ASSERT_TRUE(props);
  const auto p = json::parse(props->body);
  EXPECT_EQ(p["layers"], 2);
  EXPECT_EQ(p["heads"], 2);
  EXPECT_EQ(p["speaker_prefix"], true);
  EXPECT_EQ(p["speakers"][0], "ned stark");  // most lines first
  EXPECT_EQ(p["limits"]["parallel"], 2);
  EXPECT_EQ(health()["status"], "ok");
}

TEST_F(Serve, ApiKeyGuardsTheApiButNotThePage) {
  ServerProcess keyed;
  ASSERT_TRUE(keyed.start(kServe, {"-c", ckpt_, "--api-key", "s3cret"}, dir_->file("keyed.log")));
  httplib::Client c("127.0.0.1", keyed.port);
  const std::string body = json{{"prompt", "ned stark: Winter"}, {"n_predict", 3}}.dump();
  auto none = c.Post("/completion", body, "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(json::parse(none->body)["error"]["type"], "authentication_error");
  auto wrong = c.Post("/completion", {{"Authorization", "Bearer nope"}}, body, "application/json");
  EXPECT_EQ(wrong->status, 401);
  auto bearer = c.Post("/completion", {{"Authorization", "Bearer s3cret"}}, body, "application/json");
  EXPECT_EQ(bearer->status, 200);
  auto header = c.Get("/props", {{"X-Api-Key", "s3cret"}});
  EXPECT_EQ(header->status, 200);
  EXPECT_EQ(c.Get("/props")->status, 401);
  EXPECT_EQ(c.Get("/")->status, 200);
  auto health = c.Get("/health");
  EXPECT_EQ(health->status, 200);
  EXPECT_FALSE(json::parse(health->body).contains("heap_in_use_bytes")) << health->body;  // only with the key
  EXPECT_TRUE(json::parse(c.Get("/health", {{"X-Api-Key", "s3cret"}})->body).contains("heap_in_use_bytes"));
  const int status = keyed.stop(SIGINT);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << keyed.log();
}

TEST_F(Serve, RefusesBadStartsInOneLine) {
  TempDir d;
  expect_one_line_error(run(d, kServe + " -c " + d.file("missing.pt")), "missing.pt");
  expect_one_line_error(run(d, kServe + " -c " + ckpt_ + " --port 70000"), "--port");
  expect_one_line_error(run(d, kServe + " -c " + ckpt_ + " --parallel 0"), "--parallel");
  expect_one_line_error(run(d, kServe + " -c " + ckpt_ + " --api-key ''"), "--api-key is empty");
  expect_one_line_error(run(d, kServe + " -c " + ckpt_ + " --api-key ' '"), "--api-key holds a space");
  expect_one_line_error(run(d, kServe + " -c " + ckpt_ + " --api-key 'two words'"), "--api-key holds a space");
  // The port the test server holds is taken.
  expect_one_line_error(run(d, kServe + " -c " + ckpt_ + " --port " + std::to_string(server_->port)), "cannot listen");
}

// The load benchmark, small: concurrent streaming clients, no errors, a clean stop.
TEST_F(Serve, LoadBenchmarkRunsWithoutErrors) {
  const std::string load = std::string(DRACARYS_BIN_DIR) + "/dracarys-serve-load";
  auto r = run(*dir_, load + " -c " + ckpt_ + " --clients 8 --requests 24 --tokens 16 --max-seconds 120 --log " +
                          dir_->file("load.log"));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const auto report = json::parse(r.out.substr(r.out.rfind('{')));
  EXPECT_EQ(report["errors"], 0);
  EXPECT_EQ(report["completed"], 24);
  EXPECT_EQ(report["server_stopped_cleanly"], true);
  // malloc's heap in use after the second half of the requests is what it was after the first
  // (a leak of a KV cache per request would be megabytes).
  EXPECT_LT(report["server_heap_mb_after_load"].get<double>() - report["server_heap_mb_after_half"].get<double>(), 0.25)
      << r.out;
}

// OpenAI's discovery and llama.cpp's token routes: the one model, its tokens both ways, and
// the counters of /metrics growing with a completion.
TEST_F(Serve, ModelsTokensAndMetrics) {
  auto c = client();
  auto list = c.Get("/v1/models");
  ASSERT_TRUE(list);
  const auto models = json::parse(list->body);
  ASSERT_EQ(models["data"].size(), 1u) << models;
  const std::string name = models["data"][0]["id"];
  EXPECT_EQ(name, "scene.pt");
  auto one = c.Get(("/v1/models/" + name).c_str());
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200);
  EXPECT_EQ(json::parse(one->body)["id"], name);
  auto none = c.Get("/v1/models/gpt-4");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 404);
  EXPECT_EQ(json::parse(none->body)["error"]["param"], "model");
  auto long_id = c.Get(("/v1/models/" + std::string(5000, 'x')).c_str());
  ASSERT_TRUE(long_id);
  EXPECT_EQ(long_id->status, 404);
  EXPECT_LT(long_id->body.size(), 400u) << "the id is echoed whole";

  auto [status, tokens] = post("/tokenize", json{{"content", "ned stark: Winter is coming."}}.dump());
  ASSERT_EQ(status, 200) << tokens;
  ASSERT_GT(tokens["tokens"].size(), 3u);
  auto [status2, text] = post("/detokenize", json{{"tokens", tokens["tokens"]}}.dump());
  ASSERT_EQ(status2, 200) << text;
  EXPECT_EQ(text["content"], "ned stark: Winter is coming.");
  auto [status3, pieces] = post("/tokenize", json{{"content", "Winter"}, {"with_pieces", true}}.dump());
  ASSERT_EQ(status3, 200) << pieces;
  std::string joined;
  for (const auto& t : pieces["tokens"]) joined += t["piece"].get<std::string>();
  EXPECT_EQ(joined, "Winter");
  EXPECT_EQ(post("/detokenize", R"({"tokens": [100000]})").first, 400);
  EXPECT_EQ(post("/tokenize", R"({"content": "a", "add_special": true})").first, 400);

  auto counter = [&](const std::string& metric) {
    auto res = client().Get("/metrics");
    EXPECT_TRUE(res && res->status == 200);
    if (!res) return -1.0;
    EXPECT_NE(res->get_header_value("Content-Type").find("text/plain"), std::string::npos);
    const auto at = res->body.find("\ndracarys:" + metric + " ");
    EXPECT_NE(at, std::string::npos) << res->body;
    return at == std::string::npos ? -1.0 : std::stod(res->body.substr(at + metric.size() + 11));
  };
  const double before = counter("tokens_predicted_total"), requests = counter("requests_total");
  auto [status4, done] = post("/completion", json{{"prompt", "ned stark: Winter"}, {"temperature", 0}}.dump());
  ASSERT_EQ(status4, 200) << done;
  EXPECT_EQ(counter("tokens_predicted_total"), before + static_cast<double>(done["tokens"].size()));
  EXPECT_EQ(counter("requests_total"), requests + 1);
  EXPECT_GE(counter("time_to_first_token_count"), 1);
  EXPECT_EQ(done["timings"]["predicted_n"], done["tokens_predicted"]);
}

// Stop sequences end the text where they first appear, are never shown, and may span tokens;
// streamed pieces hold back what might begin one.
TEST_F(Serve, StopSequencesEndTheTextAndAreNeverShown) {
  // The memorised line: "ned stark: Winter" -> " is coming."
  const json body = {{"prompt", "ned stark: Winter"}, {"temperature", 0}, {"stop", {"xyz", "s com"}}};
  auto [status, j] = post("/completion", body.dump());
  ASSERT_EQ(status, 200) << j;
  EXPECT_EQ(j["content"], " i");
  EXPECT_EQ(j["stopped_word"], true);
  EXPECT_EQ(j["stopping_word"], "s com");
  EXPECT_EQ(j["stopped_eos"], false);
  json streamed = body;
  streamed["stream"] = true;
  const auto data = events("/completion", streamed);
  std::string text;
  for (size_t i = 0; i + 1 < data.size(); ++i) text += json::parse(data[i])["content"].get<std::string>();
  EXPECT_EQ(text, " i");
  auto [status2, o] =
      post("/v1/completions",
           json{{"prompt", "ned stark: Winter"}, {"temperature", 0}, {"stop", "ing"}, {"max_tokens", 20}}.dump());
  ASSERT_EQ(status2, 200) << o;
  EXPECT_EQ(o["choices"][0]["text"], " is com");
  EXPECT_EQ(o["choices"][0]["finish_reason"], "stop");
  // A stop sequence that never comes changes nothing.
  auto [status3, k] =
      post("/completion", json{{"prompt", "ned stark: Winter"}, {"temperature", 0}, {"stop", {"dragon"}}}.dump());
  ASSERT_EQ(status3, 200) << k;
  EXPECT_EQ(k["content"], " is coming.");
}

// Every field that changes the output is honoured: the prompt as token ids, min_p, echo, the
// log-probabilities in both shapes; and any other is refused, naming it.
TEST_F(Serve, EveryFieldIsHonouredOrRefused) {
  auto [s1, ids] = post("/tokenize", json{{"content", "ned stark: Winter"}}.dump());
  ASSERT_EQ(s1, 200);
  auto [s2, by_ids] = post("/completion", json{{"prompt", ids["tokens"]}, {"temperature", 0}}.dump());
  ASSERT_EQ(s2, 200) << by_ids;
  EXPECT_EQ(by_ids["content"], " is coming.");
  EXPECT_EQ(by_ids["prompt_tokens"], ids["tokens"]);
  // min_p = 1 keeps only the most likely token: any temperature and seed give the greedy text.
  auto [s3, min_p] =
      post("/completion",
           json{{"prompt", "robert baratheon:"}, {"temperature", 1.5}, {"seed", 3}, {"min_p", 1.0}, {"n_predict", 30}}
               .dump());
  auto [s4, greedy] =
      post("/completion", json{{"prompt", "robert baratheon:"}, {"temperature", 0}, {"n_predict", 30}}.dump());
  ASSERT_EQ(s3, 200) << min_p;
  EXPECT_EQ(min_p["tokens"], greedy["tokens"]);
  // n_probs: each token's log-probability, with the alternatives most likely first.
  auto [s5, probs] =
      post("/completion", json{{"prompt", "ned stark: Winter"}, {"temperature", 0}, {"n_probs", 3}}.dump());
  ASSERT_EQ(s5, 200) << probs;
  const auto& cp = probs["completion_probabilities"];
  ASSERT_EQ(cp.size(), probs["tokens"].size());
  for (size_t i = 0; i < cp.size(); ++i) {
    EXPECT_EQ(cp[i]["id"], probs["tokens"][i]);
    ASSERT_EQ(cp[i]["top_logprobs"].size(), 3u);
    EXPECT_EQ(cp[i]["top_logprobs"][0]["id"], cp[i]["id"]);  // greedy: the most likely
    EXPECT_EQ(cp[i]["top_logprobs"][0]["logprob"], cp[i]["logprob"]);
    EXPECT_LE(cp[i]["logprob"].get<double>(), 0.0);
    EXPECT_GE(cp[i]["top_logprobs"][0]["logprob"].get<double>(), cp[i]["top_logprobs"][1]["logprob"].get<double>());
  }
  // OpenAI's echo and logprobs.
  auto [s6, echo] =
      post("/v1/completions",
           json{{"prompt", "ned stark: Winter"}, {"temperature", 0}, {"echo", true}, {"max_tokens", 20}}.dump());
  ASSERT_EQ(s6, 200) << echo;
  EXPECT_EQ(echo["choices"][0]["text"], "ned stark: Winter is coming.");
  auto [s7, lp] =
      post("/v1/completions",
           json{{"prompt", "ned stark: Winter"}, {"temperature", 0}, {"logprobs", 2}, {"max_tokens", 20}}.dump());
  ASSERT_EQ(s7, 200) << lp;
  const auto& l = lp["choices"][0]["logprobs"];
  ASSERT_EQ(l["tokens"].size(), l["token_logprobs"].size());
  ASSERT_EQ(l["top_logprobs"].size(), l["tokens"].size());
  std::string joined;
  for (const auto& t : l["tokens"]) joined += t.get<std::string>();
  EXPECT_EQ(joined, lp["choices"][0]["text"]);
  // Refused, each naming its field; accepted where they change nothing.
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"/completion", R"({"prompt": "a", "grammar": "root ::= x"})"},
      {"/completion", R"({"prompt": "a", "n_keep": 4})"},
      {"/v1/completions", R"({"prompt": "a", "suffix": "b"})"},
      {"/v1/completions", R"({"prompt": "a", "logit_bias": {"5": 100}})"},
      {"/v1/completions", R"({"prompt": "a", "echo": true, "logprobs": 1})"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "a"}], "tools": []})"},
  };
  for (const auto& [path, body] : refused) {
    auto [status, e] = post(path, body);
    EXPECT_EQ(status, 400) << path << " " << body << " -> " << e;
    EXPECT_TRUE(e["error"]["param"].is_string()) << e;
  }
  EXPECT_EQ(post("/completion", R"({"prompt": "a", "user": "me", "cache_prompt": true, "n_predict": 2})").first, 200);
  EXPECT_EQ(post("/v1/completions", R"({"prompt": "a", "user": "me", "logit_bias": {}, "max_tokens": 2})").first, 200);
  EXPECT_EQ(post("/attention", R"({"prompt": ""})").first, 400);
}

// Chat: the messages are the lines of a scene, each spoken by its name; the answer is the next
// line, by the speaker the request names or by whoever the model picks.
TEST_F(Serve, ChatIsTheSceneSpokenLineByLine) {
  const json messages = {
      {{"role", "user"}, {"name", "ned stark"}, {"content", "Winter is coming."}},
      {{"role", "assistant"}, {"name", "robert baratheon"}, {"content", "You were always the gloomy one."}},
      {{"role", "user"}, {"name", "ned stark"}, {"content", "Someone has to be."}}};
  auto [status, j] = post("/v1/chat/completions", json{{"messages", messages}, {"temperature", 0}}.dump());
  ASSERT_EQ(status, 200) << j;
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["name"], "cersei lannister");  // the model picked who speaks
  EXPECT_EQ(j["choices"][0]["message"]["content"], "The king is tired.");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  auto [status2, k] = post("/v1/chat/completions",
                           json{{"messages", messages}, {"temperature", 0}, {"speaker", "Cersei Lannister"}}.dump());
  ASSERT_EQ(status2, 200) << k;
  EXPECT_EQ(k["choices"][0]["message"]["name"], "cersei lannister");
  EXPECT_EQ(k["choices"][0]["message"]["content"], "The king is tired.");
  // Streamed: a first chunk with the role and name, then the content.
  const auto data = events("/v1/chat/completions", json{{"messages", messages}, {"temperature", 0}, {"stream", true}});
  ASSERT_GE(data.size(), 3u);
  EXPECT_EQ(data.back(), "[DONE]");
  std::string content;
  const auto first = json::parse(data[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["name"], "cersei lannister");
  for (size_t i = 0; i + 1 < data.size(); ++i) {
    const auto e = json::parse(data[i]);
    if (e["choices"][0]["delta"].contains("content")) content += e["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(content, "The king is tired.");
  EXPECT_EQ(json::parse(data[data.size() - 2])["choices"][0]["finish_reason"], "stop");
  // A system message has no speaker to say it: refused, with the reason.
  auto [status3, e] =
      post("/v1/chat/completions", json{{"messages", {{{"role", "system"}, {"content", "You are Cersei."}}}}}.dump());
  EXPECT_EQ(status3, 400) << e;
  EXPECT_NE(e["error"]["message"].get<std::string>().find("system"), std::string::npos);
}

// Each choice's log-probabilities join to its content, and the usage counts those tokens: the
// speaker's name is the prompt's (before, the model's "name:" was scored and counted as well).
static void expect_tokens_of_content(const json& j) {
  int64_t scored = 0;
  for (const auto& choice : j["choices"]) {
    std::string joined;
    for (const auto& t : choice["logprobs"]["content"]) joined += t["token"].get<std::string>(), ++scored;
    EXPECT_EQ(joined, choice["message"]["content"]) << choice;
  }
  EXPECT_EQ(j["usage"]["completion_tokens"], scored) << j;
}

// Whoever the model picks to answer is one of the checkpoint's speakers, however hot the
// sampling (before, it wrote the name freely: at temperature 3 any text before a ':').
TEST_F(Serve, ChatAnswersOnlyAsACheckpointSpeaker) {
  const json messages = {{{"role", "user"}, {"name", "ned stark"}, {"content", "Winter is coming."}}};
  auto [status, j] = post(
      "/v1/chat/completions",
      json{{"messages", messages}, {"temperature", 3}, {"n", 4}, {"seed", 11}, {"max_tokens", 8}, {"logprobs", true}}
          .dump());
  ASSERT_EQ(status, 200) << j;
  const std::set<std::string> speakers = {"ned stark", "robert baratheon", "cersei lannister"};
  for (const auto& choice : j["choices"]) EXPECT_EQ(speakers.count(choice["message"].value("name", "")), 1u) << choice;
  expect_tokens_of_content(j);
  // Greedy, the pick is the scene's own next speaker, and the logprobs are the content's.
  auto [status2, k] =
      post("/v1/chat/completions", json{{"messages", messages}, {"temperature", 0}, {"logprobs", true}}.dump());
  ASSERT_EQ(status2, 200) << k;
  EXPECT_EQ(k["choices"][0]["message"]["name"], "robert baratheon");
  EXPECT_EQ(k["choices"][0]["message"]["content"], "You were always the gloomy one.");
  expect_tokens_of_content(k);
  // --assistant-name answers every chat that names no speaker: it must be one of them too.
  TempDir d;
  expect_one_line_error(run(d, kServe + " -c " + ckpt_ + " --assistant-name Cersei"),
                        "--assistant-name 'Cersei' is not a speaker of the training corpus; did you mean 'cersei "
                        "lannister'?");
}

// A line that runs on into another speaker's "name:" ends there: a model that learned a line
// with "robert baratheon:" inside it answers only its first part, and neither the logprobs nor
// the usage count the cut tokens. Streamed, the same.
TEST(ServeChat, TheAnswerStopsWhereAnotherSpeakerWouldBegin) {
  TempDir d;
  std::string text;
  for (int i = 0; i < 8; ++i)
    text += "ned stark: Winter is coming.\ncersei lannister: Go.robert baratheon: Wine!\nrobert baratheon: More.\n";
  const std::string ckpt = d.file("runon.pt");
  auto trained = train_once(d, d.write("runon.txt", text), kSceneShape + " --max-steps 500 --eval-every 500", ckpt);
  ASSERT_EQ(trained.code, 0) << trained.err;
  ServerProcess server;
  ASSERT_TRUE(server.start(kServe, {"-c", ckpt}, d.file("runon.log")));
  httplib::Client c("127.0.0.1", server.port);
  c.set_read_timeout(60);
  const json ask = {{"messages", {{{"role", "user"}, {"name", "ned stark"}, {"content", "Winter is coming."}}}},
                    {"speaker", "cersei lannister"},
                    {"temperature", 0},
                    {"logprobs", true}};
  auto res = c.Post("/v1/chat/completions", ask.dump(), "application/json");
  ASSERT_TRUE(res);
  const json j = json::parse(res->body);
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Go.") << j;
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  expect_tokens_of_content(j);
  json streamed = ask;
  streamed["stream"] = true;
  auto raw = c.Post("/v1/chat/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(raw);
  std::string content;
  for (size_t at = 0, end; (end = raw->body.find("\n\n", at)) != std::string::npos; at = end + 2) {
    const std::string data = raw->body.substr(at + 6, end - at - 6);
    if (data == "[DONE]") break;
    const auto delta = json::parse(data)["choices"][0]["delta"];
    if (delta.contains("content")) content += delta["content"].get<std::string>();
  }
  EXPECT_EQ(content, "Go.");
  server.stop(SIGTERM);
}

// With --cors, a page from that origin may call the API: preflights answered, the header on
// every answer. Without it (the suite's server), neither.
TEST_F(Serve, CorsOnlyWhenAsked) {
  auto plain = client().Get("/health");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->has_header("Access-Control-Allow-Origin"));
  ServerProcess cors;
  ASSERT_TRUE(
      cors.start(kServe, {"-c", ckpt_, "--cors", "https://example.org", "--api-key", "k"}, dir_->file("cors.log")));
  httplib::Client c("127.0.0.1", cors.port);
  httplib::Headers preflight = {{"Origin", "https://example.org"}, {"Access-Control-Request-Method", "POST"}};
  auto res = c.Options("/v1/completions", preflight);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 204);
  EXPECT_EQ(res->get_header_value("Access-Control-Allow-Origin"), "https://example.org");
  EXPECT_NE(res->get_header_value("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
  auto refused = c.Post("/v1/completions", R"({"prompt": "a"})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);  // the key is still needed, and the refusal still readable
  EXPECT_EQ(refused->get_header_value("Access-Control-Allow-Origin"), "https://example.org");
  cors.stop(SIGTERM);
}

// Continuous batching: requests computed together give exactly the tokens and log-probabilities
// they give alone, on a server that computes each alone (--no-batching).
TEST_F(Serve, BatchedRequestsEqualTheSameRequestsAlone) {
  ServerProcess alone;
  ASSERT_TRUE(alone.start(kServe, {"-c", ckpt_, "--no-batching", "--parallel", "1"}, dir_->file("alone.log")));
  httplib::Client c("127.0.0.1", alone.port);
  c.set_read_timeout(60);
  std::vector<json> bodies;
  const std::vector<std::string> prompts = {"robert baratheon:", "cersei lannister: The", "ned stark:", ""};
  for (int i = 0; i < 6; ++i)
    bodies.push_back({{"prompt", prompts[i % prompts.size()]},
                      {"n_predict", 50 + 7 * i},
                      {"temperature", 1.3},
                      {"seed", 100 + i},
                      {"n_probs", 2}});
  std::vector<json> expected;
  for (const auto& b : bodies) {
    auto res = c.Post("/completion", b.dump(), "application/json");
    ASSERT_TRUE(res && res->status == 200);
    expected.push_back(json::parse(res->body));
  }
  alone.stop(SIGTERM);
  ServerProcess batched;  // all six in one batch
  ASSERT_TRUE(batched.start(kServe, {"-c", ckpt_, "--parallel", "6"}, dir_->file("batched.log")));
  std::vector<json> together(bodies.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < bodies.size(); ++i)
    threads.emplace_back([&, i] {
      httplib::Client b("127.0.0.1", batched.port);
      b.set_read_timeout(60);
      auto res = b.Post("/completion", bodies[i].dump(), "application/json");
      if (res) together[i] = json::parse(res->body, nullptr, false);
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < bodies.size(); ++i) {
    EXPECT_EQ(together[i]["tokens"], expected[i]["tokens"]) << "request " << i;
    EXPECT_EQ(together[i]["completion_probabilities"], expected[i]["completion_probabilities"]) << "request " << i;
  }
  // They were computed together: the batch took fewer steps than the tokens it made.
  auto metrics = httplib::Client("127.0.0.1", batched.port).Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("dracarys:batch_size_max"), std::string::npos);
  const auto at = metrics->body.find("\ndracarys:batch_size_max ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_GE(std::stod(metrics->body.substr(at + 25)), 2.0) << metrics->body;
  batched.stop(SIGTERM);
}

// /attention and /trace grow as layers x heads x tokens^2: a model with a long context refuses
// more tokens than the bound, naming it, before computing anything.
TEST_F(Serve, AttentionAndTraceAreBoundedByWhatTheyWouldProduce) {
  TempDir d;
  Checkpoint wide = load_checkpoint(ckpt_);
  wide.config.layers = 4;
  wide.config.heads = 8;
  wide.config.d_model = 32;
  wide.config.d_ff = 32;
  wide.config.context = 2048;
  Transformer model(wide.config);
  wide.model = module_bytes(*model);
  const std::string path = d.file("wide.pt");
  save_checkpoint(path, wide);
  const int64_t most = max_attention_tokens(wide.config);
  EXPECT_EQ(most, 512);  // 4 x 8 x 512^2 = 2^23
  EXPECT_EQ(max_attention_tokens(load_checkpoint(ckpt_).config), load_checkpoint(ckpt_).config.context);
  ServerProcess server;
  ASSERT_TRUE(server.start(kServe, {"-c", path}, d.file("wide.log")));
  httplib::Client c("127.0.0.1", server.port);
  c.set_read_timeout(60);
  for (const std::string route : {"/attention", "/trace"}) {
    const json body = {{"tokens", std::vector<int64_t>(1024, 5)}};
    auto res = c.Post(route, body.dump(), "application/json");
    ASSERT_TRUE(res) << route;
    EXPECT_EQ(res->status, 400) << route;
    const auto j = json::parse(res->body);
    EXPECT_EQ(j["error"]["param"], "tokens") << res->body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find("takes at most 512 tokens on this model"),
              std::string::npos)
        << res->body;
    auto small = c.Post(route, json{{"tokens", {5, 6, 7}}}.dump(), "application/json");
    ASSERT_TRUE(small);
    EXPECT_EQ(small->status, 200) << small->body;
  }
  server.stop(SIGTERM);
}

// What no handler expected reaches the client in our words, without LibTorch's text.
TEST(ServeFailures, LibraryTextAndAddressesNeverReachTheClient) {
  auto text_of = [](auto thrower) {
    try {
      thrower();
    } catch (...) {
      return failure_text(std::current_exception());
    }
    return FailureText{};
  };
  const auto oom = text_of([] {
    throw c10::Error(
        "[enforce fail at alloc_cpu.cpp:75] data. DefaultCPUAllocator: not enough memory: you tried to "
        "allocate 3470000000 bytes.",
        "frame #0: c10::Error::Error() + 0x7f0f12345678");
  });
  EXPECT_EQ(oom.for_client, "out of memory");
  EXPECT_EQ(oom.for_log.find("0x"), std::string::npos) << oom.for_log;
  EXPECT_EQ(text_of([] { throw std::bad_alloc(); }).for_client, "out of memory");
  const auto other = text_of([] { throw c10::Error("[enforce fail at x.cpp:1] shape mismatch", "frame #0: 0x7f00"); });
  EXPECT_EQ(other.for_client.find("enforce"), std::string::npos) << other.for_client;
  EXPECT_EQ(other.for_log.find("0x7f"), std::string::npos) << other.for_log;
  EXPECT_EQ(text_of([] { throw 42; }).for_client, "an internal error");
}

// A token count above --max-tokens is clamped to it, and the response's header says so.
TEST_F(Serve, TokenCountsAboveTheLimitAreClampedAndSaidSo) {
  TempDir d;
  ServerProcess small;
  ASSERT_TRUE(small.start(kServe, {"-c", ckpt_, "--max-tokens", "6"}, d.file("small.log")));
  httplib::Client c("127.0.0.1", small.port);
  c.set_read_timeout(60);
  const std::pair<std::string, json> asks[] = {
      {"/completion", {{"prompt", "ned stark:"}, {"n_predict", 1000}, {"ignore_eos", true}}},
      {"/v1/completions", {{"prompt", "ned stark:"}, {"max_tokens", 1000}}},
      {"/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "Winter"}}}}, {"max_tokens", 1000}}}};
  for (const auto& [route, body] : asks) {
    auto res = c.Post(route, body.dump(), "application/json");
    ASSERT_TRUE(res) << route;
    EXPECT_EQ(res->status, 200) << route << ": " << res->body;
    EXPECT_EQ(res->get_header_value("X-Max-Tokens-Clamped"), "6; asked 1000") << route;
  }
  auto within = c.Post("/completion", json{{"prompt", "ned stark:"}, {"n_predict", 3}}.dump(), "application/json");
  ASSERT_TRUE(within);
  EXPECT_FALSE(within->has_header("X-Max-Tokens-Clamped"));
  small.stop(SIGTERM);
}
