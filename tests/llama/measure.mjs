// Measures a GGUF in llama.cpp (node-llama-cpp's prebuilt CPU build), as dracarys-infer measures
// a checkpoint, for scripts/bench-export.sh:
//
//   node measure.mjs MODEL.gguf HELDOUT.txt THREADS
//
// Score: the held-out lines as one stream, each line's tokens then </s>, cut into windows of the
// context that each start afresh: `dracarys-infer --score`'s windows, so the bits are summed over
// the same predictions. Generation: a 64-token prompt, then greedy tokens up to the context
// (llama.cpp cannot go past it), timed from the first generated token; the median of five.
// Prints one JSON object.
import {readFileSync} from "node:fs";
import {getLlama} from "node-llama-cpp";

const [modelPath, heldoutPath, threadsArg] = process.argv.slice(2);
const threads = Number(threadsArg ?? 1);
const kEos = 1;

const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: "error"});
const model = await llama.loadModel({modelPath});
const n = model.trainContextSize;
const context = await model.createContext({contextSize: n, batchSize: n, threads, flashAttention: false});
const sequence = context.getSequence();

async function score() {
  const stream = [];
  for (const line of readFileSync(heldoutPath, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    stream.push(...model.tokenize(line), kEos);
  }
  let bits = 0, predicted = 0;
  for (let s = 0; s + 1 < stream.length; s += n) {
    const length = Math.min(n, stream.length - 1 - s);
    await sequence.clearHistory();
    const out = await sequence.controlledEvaluate(
        stream.slice(s, s + length).map((t) => [t, {generateNext: {probabilities: true}}]));
    for (let t = 0; t < length; ++t) bits -= Math.log2(out[t].next.probabilities.get(stream[s + t + 1]) ?? 0);
    predicted += length;
  }
  return {tokens: predicted, bits};
}

async function generationTokensPerSecond() {
  const base = Array.from(model.tokenize("cersei lannister: When you play the game of thrones, you win or you die. "));
  const prompt = Array.from({length: n / 2}, (_, i) => base[i % base.length]);
  const rates = [];
  for (let run = 0; run < 5; ++run) {
    await sequence.clearHistory();
    let first = 0, count = 0;
    for await (const token of sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
      void token;
      if (count++ === 0) first = performance.now();
      if (prompt.length + count >= n) break;
    }
    rates.push((count - 1) / ((performance.now() - first) / 1000));
  }
  rates.sort((a, b) => a - b);
  return {new_tokens: n - prompt.length, gen_tokens_per_s: rates[2]};
}

console.log(JSON.stringify({model: modelPath, threads, ...(await score()), ...(await generationTokensPerSecond())}));
await llama.dispose();
