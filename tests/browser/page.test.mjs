// The page in a real browser: Debian's headless Chromium, driven by puppeteer-core, against
// a dracarys-serve this script starts with a tiny model it trains. It types a line, waits for
// the streamed completion, clicks a token, and checks that the layers × heads grid shows that
// token's attention weights, equal to what POST /attention returns. Then the walk through: every
// box of one head, each box's shape and a number read by hovering equal to POST /trace's, box by
// box and head by head. Then the filters forming: the training slider moved, the grid showing
// that step's filters, equal to GET /probe's. Saves a screenshot of each view:
// SCREENSHOT.png, SCREENSHOT-walk.png, SCREENSHOT-forming.png.
//
//   node tests/browser/page.test.mjs BIN_DIR SCREENSHOT.png [CHECKPOINT]
//
// With a CHECKPOINT of your own (the README's screenshots): SPEAKER and LINE type the line,
// GREEDY=1 completes it greedily, WALK=L,H shows layer L, head H in the walk-through screenshot,
// and PROBE=1 checks the slider too (the checkpoint needs its probe file).
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { missing, need } from "../optional.mjs";

const { default: puppeteer } = await need("puppeteer-core", () => import("puppeteer-core"));

const [binDir, screenshot, givenCheckpoint] = process.argv.slice(2);
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";
if (!existsSync(chromium)) missing(`Chromium (${chromium})`);
const fail = (message) => { console.error("FAIL: " + message); process.exitCode = 1; };
const dir = mkdtempSync(join(tmpdir(), "dracarys-page-"));

// A memorised scene: the model completes "ned stark: Winter" with " is coming."
function trainTinyModel() {
  const scene = ["ned stark: Winter is coming.", "robert baratheon: You were always the gloomy one.",
                 "ned stark: Someone has to be.", "cersei lannister: The king is tired."];
  writeFileSync(join(dir, "scene.txt"), (scene.join("\n") + "\n").repeat(6));
  const ckpt = join(dir, "scene.pt");
  execFileSync(join(binDir, "dracarys-train"),
               ["--corpus", join(dir, "scene.txt"), "--out", ckpt, "--layers", "2", "--heads", "2",
                "--d-model", "64", "--d-ff", "128", "--context", "64", "--batch-size", "8", "--threads", "1",
                "--lr", "3e-3", "--warmup", "0.05", "--vocab-size", "300", "--val-share", "0",
                "--max-steps", "600", "--eval-every", "100", "--probe", "ned stark: Winter is coming."],
               { stdio: ["ignore", "ignore", "ignore"] });
  return ckpt;
}

// Starts the server on a free port; resolves with its address once it says where it listens.
function startServer(ckpt) {
  const server = spawn(join(binDir, "dracarys-serve"), ["-c", ckpt, "--port", "0"],
                       { stdio: ["ignore", "pipe", "inherit"] });
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

const post = async (path, body) => (await fetch(url + path.slice(1), {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();

// Hovers the middle of cell (row, col) of a heat-map canvas; returns what its readout then holds.
async function hoverCell(page, canvas, readout, row, col) {
  // The canvas's inner box (its border left out), in the viewport once scrolled to the middle.
  const box = await canvas.evaluate((c) => {
    c.scrollIntoView({ block: "center", inline: "center" });
    const r = c.getBoundingClientRect();
    return { x: r.left + c.clientLeft, y: r.top + c.clientTop, width: c.clientWidth, height: c.clientHeight,
             rows: Number(c.dataset.rows), cols: Number(c.dataset.cols) };
  });
  await page.mouse.move(box.x + (col + 0.5) * box.width / box.cols, box.y + (row + 0.5) * box.height / box.rows);
  return readout.evaluate((r) => ({ row: Number(r.dataset.row), col: Number(r.dataset.col), value: r.dataset.value }));
}

// The walk through, for the chosen token: each box in the route's order with the route's shape,
// and a number under the mouse equal to the route's; then the next box, the next head.
// It opens on the most focused head: the most weight on one earlier token but the first.
async function checkWalkThrough(page, ids, chosen, attention) {
  await page.waitForSelector("#walk:not([hidden]) #boxes .box");
  let focused = { layer: 0, head: 0, weight: -1 };
  attention.weights.forEach((heads, layer) => heads.forEach((rows, head) => rows[chosen].forEach((weight, key) => {
    if (key >= 1 && key < chosen && weight > focused.weight) focused = { layer, head, weight };
  })));
  const framed = await page.$$eval("#grid .panel.telling h3", (hs) => hs.map((h) => h.textContent));
  if (framed.length !== 1 || !framed[0].startsWith(`layer ${focused.layer}, head ${focused.head} `))
    fail(`the framed panel is ${JSON.stringify(framed)}, not layer ${focused.layer}, head ${focused.head}`);
  const opened = await page.$eval("#walk-focus", (e) => e.textContent);
  if (!opened.startsWith(`Layer ${focused.layer}, head ${focused.head},`)) fail(`the walk opened on ${opened}`);
  const want = await post("/trace", { tokens: ids, layer: focused.layer, head: focused.head });
  const boxes = await page.$$("#boxes .box");
  if (boxes.length !== want.boxes.length) fail(`${boxes.length} boxes on the page, ${want.boxes.length} from /trace`);
  for (let n = 0; n < Math.min(boxes.length, want.boxes.length); ++n) {
    const b = want.boxes[n];
    const shown = await boxes[n].evaluate((d) => ({ name: d.dataset.name, rows: Number(d.dataset.rows),
                                                    cols: Number(d.dataset.cols) }));
    if (shown.name !== b.name || shown.rows !== b.shape[0] || shown.cols !== b.shape[1])
      fail(`box ${n}: page ${JSON.stringify(shown)}, /trace ${b.name} ${JSON.stringify(b.shape)}`);
    const row = Math.min(chosen, b.shape[0] - 1), col = b.shape[1] > 1 ? Math.min(1, b.shape[1] - 1) : 0;
    const got = await hoverCell(page, await boxes[n].$("canvas"), await boxes[n].$(".readout"), row, col);
    // A cell one pixel wide may round to its neighbour: the number must be that of the cell shown.
    const near = Math.abs(got.row - row) <= 1 && Math.abs(got.col - col) <= 1;
    const value = near ? b.values[got.row][got.col] : undefined;
    const expected = value === null ? "-Infinity" : String(value);
    if (!near || got.value !== expected)
      fail(`box ${b.name} (${row}, ${col}): page ${JSON.stringify(got)}, /trace ${expected}`);
  }
  await page.click("#next-box");
  const focus = await page.$eval("#walk-focus", (e) => e.textContent);
  if (!focus.includes(`box 2 of ${want.boxes.length}: ${want.boxes[1].title}`)) fail(`after "box ▶": ${focus}`);
  await page.click("#next-head");
  const next = `Layer ${focused.layer}, head ${(focused.head + 1) % attention.heads},`;
  await page.waitForFunction((n) => document.getElementById("walk-focus").textContent.startsWith(n), {}, next);
  console.log(`walk through: opened on layer ${focused.layer}, head ${focused.head} (weight ` +
              `${focused.weight.toFixed(3)}); ${want.boxes.length} boxes ` +
              `(${want.boxes.map((b) => b.name).join(", ")}) equal /trace's`);
}

// The training slider: at each end, every panel shows that step's filters, equal to /probe's.
async function checkFiltersForming(page) {
  await page.waitForSelector("#forming:not([hidden]) .probe-panel");
  const probe = await (await fetch(url + "probe")).json();
  const T = probe.tokens.length, last = probe.snapshots.length - 1;
  if (last < 2) fail(`only ${probe.snapshots.length} snapshots recorded`);
  const sampled = [];
  for (const n of [0, last]) {
    await page.$eval("#probe-step", (e, v) => { e.value = v; e.dispatchEvent(new Event("input")); }, n);
    const panels = await page.$$("#probe-grid .probe-panel");
    if (panels.length !== probe.layers * probe.heads) fail(`${panels.length} probe panels`);
    const values = [];
    for (const p of panels) {
      const where = await p.evaluate((d) => ({ layer: Number(d.dataset.layer), head: Number(d.dataset.head),
                                               step: Number(d.dataset.step) }));
      if (where.step !== probe.snapshots[n].step) fail(`panel shows step ${where.step}, not ${probe.snapshots[n].step}`);
      const got = await hoverCell(page, await p.$("canvas"), await p.$(".readout"), T - 1, 0);
      const want = String(probe.snapshots[n].filters[where.layer][where.head][T - 1][0]);
      if (got.value !== want) fail(`step ${where.step} layer ${where.layer} head ${where.head}: ${got.value} != ${want}`);
      values.push(got.value);
    }
    sampled.push(values);
  }
  if (sampled[0].every((v, i) => v === sampled[1][i])) fail("the filters did not change from the first step to the last");
  console.log(`filters forming: ${probe.snapshots.length} snapshots, steps ${probe.snapshots[0].step} to ` +
              `${probe.snapshots[last].step}; both ends equal /probe's`);
}

const ckpt = givenCheckpoint || trainTinyModel();
const { server, url } = await startServer(ckpt);
const browser = await puppeteer.launch({
  executablePath: chromium, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 900 });
  page.on("pageerror", (e) => fail("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") console.error("page console: " + m.text()); });
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(url)) external.push(r.url()); });
  await page.goto(url, { waitUntil: "networkidle0" });
  await page.waitForFunction(() => document.querySelectorAll("#speaker option").length > 1);

  // Type a line as a speaker, greedy, and complete it.
  const speaker = givenCheckpoint ? process.env.SPEAKER || "" : "ned stark";
  const line = givenCheckpoint ? process.env.LINE || "" : "Winter";
  await page.select("#speaker", speaker);
  await page.type("#prompt", line);
  if (!givenCheckpoint || process.env.GREEDY) await page.$eval("#temperature", (e) => { e.value = "0"; });
  await page.click("#go");
  await page.waitForSelector("#text .tok.made", { timeout: 60000 }).catch(async (e) => {
    const state = await page.evaluate(() => ({ text: document.getElementById("text").textContent,
                                                error: document.getElementById("error").textContent }));
    throw new Error(`no clickable completion: the page shows ${JSON.stringify(state)} (${e.message})`);
  });
  const text = await page.$eval("#text", (e) => e.textContent);
  if (!givenCheckpoint && text !== "ned stark: Winter is coming.")
    fail(`the completed line is ${JSON.stringify(text)}`);

  // Click the last prompt token: the grid shows its attention in every layer and head.
  const props = await (await fetch(url + "props")).json();
  const tokens = await page.$$eval("#text .tok", (spans) => spans.map((s) => ({
    id: Number(s.dataset.id), made: s.classList.contains("made") })));
  const chosen = tokens.findIndex((t) => t.made) - 1;
  await page.click(`#text .tok[data-index="${chosen}"]`);
  await page.waitForSelector("#grid .panel");
  const panels = await page.$$eval("#grid .panel", (ps) => ps.map((p) => ({
    title: p.querySelector("h3").textContent,
    cells: [...p.querySelectorAll(".cell")].map((c) => ({ layer: Number(c.dataset.layer), head: Number(c.dataset.head),
                                                          key: Number(c.dataset.key), weight: Number(c.dataset.weight),
                                                          background: c.style.background })) })));
  if (panels.length !== props.layers * props.heads)
    fail(`${panels.length} panels for ${props.layers} layers × ${props.heads} heads`);

  // The same weights as the API's, for the same tokens.
  const answer = await (await fetch(url + "attention", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ tokens: tokens.map((t) => t.id) }) })).json();
  let compared = 0;
  for (const p of panels) {
    for (const c of p.cells) {
      const want = answer.weights[c.layer][c.head][chosen][c.key];
      if (c.weight !== want) fail(`layer ${c.layer} head ${c.head} key ${c.key}: page ${c.weight}, API ${want}`);
      if (!c.background.startsWith("rgb")) fail(`cell without a colour: ${c.background}`);
      ++compared;
    }
  }
  if (compared !== props.layers * props.heads * (chosen + 1))
    fail(`${compared} cells, expected ${props.layers * props.heads * (chosen + 1)}`);
  const legend = await page.$eval("#legend", (e) => !e.hidden);
  if (!legend) fail("the colour legend is hidden");
  if (external.length) fail("the page fetched from elsewhere: " + external.join(", "));

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`page: "${text}"; token ${chosen} clicked; ${compared} weights equal the API's; screenshot ${screenshot}`);

  const ids = tokens.map((t) => t.id);
  await checkWalkThrough(page, ids, chosen, answer);
  if (process.env.WALK) {
    const [layer, head] = process.env.WALK.split(",");
    await page.select("#walk-layer", layer);
    await page.select("#walk-head", head);
    await page.waitForFunction((l, h) => document.getElementById("walk-focus").textContent.startsWith(
      `Layer ${l}, head ${h},`), {}, layer, head);
  }
  await page.$eval("#walk", (e) => e.scrollIntoView());
  await (await page.$("#walk")).screenshot({ path: screenshot.replace(/\.png$/, "-walk.png") });
  if (!givenCheckpoint || process.env.PROBE) {
    await checkFiltersForming(page);
    await (await page.$("#forming")).screenshot({ path: screenshot.replace(/\.png$/, "-forming.png") });
  }
} catch (e) {
  fail(e.stack || String(e));
} finally {
  await browser.close();
  server.kill("SIGTERM");
  if (!givenCheckpoint) rmSync(dir, { recursive: true, force: true });
}
if (!process.exitCode) console.log("PASS");
