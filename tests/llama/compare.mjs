// Runs a GGUF written by dracarys-export in the real llama.cpp (node-llama-cpp's prebuilt
// binaries: nothing is downloaded or built) and compares it with dracarys's own numbers.
//
//   node compare.mjs MODEL.gguf REFERENCE.json
//
// REFERENCE.json (tests/test_export.cpp writes it from the checkpoint):
//   {"lines": [{"text", "tokens": [ids], "logprobs": [[log p of every token] per position]}],
//    "greedy": [{"prompt", "max_new_tokens", "text": what dracarys-infer --greedy printed}]}
// Prints one JSON object: how many lines tokenise alike, the largest |log p| difference over
// the tokens dracarys gives log p > -20 at every position, and how many greedy completions agree.
import {readFileSync} from "node:fs";
import {getLlama} from "node-llama-cpp";

const kFloor = -20;  // tokens less likely than this are not compared
const kEos = 1;

const [modelPath, referencePath] = process.argv.slice(2);
const reference = JSON.parse(readFileSync(referencePath, "utf8"));

const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: "error"});
const model = await llama.loadModel({modelPath});
const context = await model.createContext({
  contextSize: model.trainContextSize,
  batchSize: model.trainContextSize,
  threads: 1,  // llama.cpp's default spins a thread per core; one is fastest for a model this small
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
});
const sequence = context.getSequence();

// The next-token probabilities after each of `tokens`, evaluated from an empty context.
async function probabilitiesAfterEach(tokens) {
  await sequence.clearHistory();
  const out = await sequence.controlledEvaluate(tokens.map((t) => [t, {generateNext: {probabilities: true}}]));
  return out.map((o) => o.next.probabilities);
}

const result = {lines: reference.lines.length, tokenized_alike: 0, mismatches: [], compared: 0, max_abs_diff: 0,
                worst: null, greedy_total: reference.greedy.length, greedy_alike: 0, greedy_mismatches: []};

for (const [i, line] of reference.lines.entries()) {
  const theirs = Array.from(model.tokenize(line.text));
  const same = theirs.length >= line.tokens.length && line.tokens.every((t, k) => t === theirs[k]);
  if (same) result.tokenized_alike++;
  else if (result.mismatches.length < 5) result.mismatches.push({text: line.text, ours: line.tokens, theirs});
  // Log-probabilities on our tokens, so that a tokeniser difference cannot hide a model one.
  const probabilities = await probabilitiesAfterEach(line.tokens);
  for (const [position, ours] of line.logprobs.entries()) {
    for (const [token, logp] of ours.entries()) {
      if (logp <= kFloor) continue;
      const p = probabilities[position].get(token) ?? 0;
      const diff = Math.abs(Math.log(p) - logp);
      result.compared++;
      if (!(diff <= result.max_abs_diff)) {
        result.max_abs_diff = Number.isFinite(diff) ? diff : 1e9;
        result.worst = {line: i, position, token, ours: logp, theirs: Math.log(p)};
      }
    }
  }
}

for (const g of reference.greedy) {
  let probabilities = (await probabilitiesAfterEach(Array.from(model.tokenize(g.prompt)))).at(-1);
  const generated = [];
  while (generated.length < g.max_new_tokens) {
    const [token] = probabilities.entries().next().value;  // the map is sorted, most likely first
    if (token === kEos) break;
    generated.push(token);
    [probabilities] = (await sequence.controlledEvaluate([[token, {generateNext: {probabilities: true}}]])).map(
        (o) => o.next.probabilities);
  }
  const text = g.prompt + model.detokenize(generated);
  if (text === g.text) result.greedy_alike++;
  else result.greedy_mismatches.push({ours: g.text, theirs: text});
}

console.log(JSON.stringify(result));
await llama.dispose();
