// dracarys-serve through the official OpenAI Node client (`openai`, pinned in tests/api), as a
// user of any OpenAI-compatible tool would call it: model discovery, completions (plain,
// streamed, n > 1, stop, logprobs, echo), chat (plain and streamed), and a refused field.
// Trains a tiny model that learns one scene by heart, so the greedy answers are known.
//
//   node tests/api/openai.test.mjs BIN_DIR
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { need } from "../optional.mjs";

const { default: OpenAI } = await need("openai", () => import("openai"));

const [binDir] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), "dracarys-api-"));
let failures = 0;
const check = (ok, what, got) => {
  if (ok) return;
  failures += 1;
  console.error(`FAIL: ${what}` + (got === undefined ? "" : `: got ${JSON.stringify(got)}`));
};

function trainSceneModel() {
  const scene = ["ned stark: Winter is coming.", "robert baratheon: You were always the gloomy one.",
                 "ned stark: Someone has to be.", "cersei lannister: The king is tired."];
  writeFileSync(join(dir, "scene.txt"), (scene.join("\n") + "\n").repeat(6));
  const ckpt = join(dir, "scene.pt");
  execFileSync(join(binDir, "dracarys-train"),
               ["--corpus", join(dir, "scene.txt"), "--out", ckpt, "--layers", "2", "--heads", "2",
                "--d-model", "64", "--d-ff", "128", "--context", "64", "--batch-size", "8", "--threads", "1",
                "--lr", "3e-3", "--warmup", "0.05", "--vocab-size", "300", "--val-share", "0",
                "--max-steps", "600", "--eval-every", "600"], { stdio: ["ignore", "ignore", "ignore"] });
  return ckpt;
}

function startServer(ckpt) {
  const server = spawn(join(binDir, "dracarys-serve"), ["-c", ckpt, "--port", "0", "--api-key", "sesame"],
                       { stdio: ["ignore", "pipe", "ignore"] });
  return new Promise((resolve, reject) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) resolve({ server, url: m[1] });
    });
    server.on("exit", (code) => reject(new Error("dracarys-serve exited with " + code)));
    // unref: a pending timer would hold the process open for its full minute after the test
    setTimeout(() => reject(new Error("dracarys-serve did not start in 60 s")), 60000).unref();
  });
}

const { server, url } = await startServer(trainSceneModel());
const client = new OpenAI({ baseURL: url + "v1", apiKey: "sesame", maxRetries: 0 });
const scene = [
  { role: "user", name: "ned stark", content: "Winter is coming." },
  { role: "assistant", name: "robert baratheon", content: "You were always the gloomy one." },
  { role: "user", name: "ned stark", content: "Someone has to be." },
];
try {
  // Discovery.
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  check(models.length === 1 && models[0] === "scene.pt", "models.list names the checkpoint", models);
  check((await client.models.retrieve("scene.pt")).id === "scene.pt", "models.retrieve");

  // Completions: greedy, n = 2 over two prompts, streamed, stop, logprobs, echo.
  const plain = await client.completions.create({ model: "scene.pt", prompt: "ned stark: Winter", max_tokens: 20,
                                                  temperature: 0 });
  check(plain.choices[0].text === " is coming.", "completions.create", plain.choices[0].text);
  check(plain.choices[0].finish_reason === "stop", "finish_reason stop", plain.choices[0].finish_reason);
  check(plain.usage.completion_tokens > 0, "usage counts", plain.usage);
  const many = await client.completions.create({ model: "scene.pt", prompt: ["ned stark: Winter", "ned stark: Someone"],
                                                 n: 2, max_tokens: 20, temperature: 0 });
  check(many.choices.length === 4 && many.choices[2].text === " has to be.", "n: 2 over two prompts",
        many.choices.map((c) => c.text));
  let streamed = "";
  const stream = await client.completions.create({ model: "scene.pt", prompt: "ned stark: Winter", max_tokens: 20,
                                                   temperature: 0, stream: true });
  for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
  check(streamed === " is coming.", "streamed completion", streamed);
  const stopped = await client.completions.create({ model: "scene.pt", prompt: "ned stark: Winter", max_tokens: 20,
                                                    temperature: 0, stop: ["com"] });
  check(stopped.choices[0].text === " is ", "stop", stopped.choices[0].text);
  const probs = await client.completions.create({ model: "scene.pt", prompt: "ned stark: Winter", max_tokens: 20,
                                                  temperature: 0, logprobs: 2 });
  const lp = probs.choices[0].logprobs;
  check(lp && lp.tokens.join("") === " is coming." && lp.token_logprobs.every((x) => x <= 0) &&
        lp.top_logprobs.every((t) => Object.keys(t).length === 2), "logprobs", lp);
  const echoed = await client.completions.create({ model: "scene.pt", prompt: "ned stark: Winter", max_tokens: 20,
                                                   temperature: 0, echo: true });
  check(echoed.choices[0].text === "ned stark: Winter is coming.", "echo", echoed.choices[0].text);

  // Chat: the scene's next line, by whoever the model picks.
  const chat = await client.chat.completions.create({ model: "scene.pt", messages: scene, temperature: 0 });
  const message = chat.choices[0].message;
  check(message.content === "The king is tired." && message.name === "cersei lannister", "chat.completions.create",
        message);
  let said = "", name = "";
  const chatStream = await client.chat.completions.create({ model: "scene.pt", messages: scene, temperature: 0,
                                                           stream: true });
  for await (const chunk of chatStream) {
    said += chunk.choices[0]?.delta?.content ?? "";
    name ||= chunk.choices[0]?.delta?.name ?? "";
  }
  check(said === "The king is tired." && name === "cersei lannister", "streamed chat", { said, name });
  const withLogprobs = await client.chat.completions.create({ model: "scene.pt", messages: scene, temperature: 0,
                                                             logprobs: true, top_logprobs: 1 });
  check(withLogprobs.choices[0].logprobs.content.map((t) => t.token).join("") === "The king is tired." &&
        withLogprobs.usage.completion_tokens === withLogprobs.choices[0].logprobs.content.length,
        "chat logprobs", withLogprobs.choices[0].logprobs);

  // A field that would change the output and is not supported: refused, naming it.
  try {
    await client.chat.completions.create({ model: "scene.pt", messages: scene, tools: [] });
    check(false, "tools refused");
  } catch (e) {
    check(e.status === 400 && /tools/.test(e.message), "tools refused with 400 naming it", e.message);
  }
  // A system message: refused, saying why.
  try {
    await client.chat.completions.create({ model: "scene.pt", messages: [{ role: "system", content: "Be Cersei." }] });
    check(false, "system refused");
  } catch (e) {
    check(e.status === 400 && /system/.test(e.message), "system message refused", e.message);
  }
  // The key is needed.
  try {
    await new OpenAI({ baseURL: url + "v1", apiKey: "wrong", maxRetries: 0 }).models.list();
    check(false, "wrong key refused");
  } catch (e) {
    check(e.status === 401, "wrong key gets 401", e.status);
  }
} catch (e) {
  check(false, "unexpected error", String(e && e.stack || e));
} finally {
  server.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
}
console.log(failures === 0 ? "PASS: the OpenAI client" : `FAIL: ${failures} check(s)`);
process.exitCode = failures === 0 ? 0 : 1;
