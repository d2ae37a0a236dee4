// The Node baseline for bench/run.py: one warm process that compiles MJML with the reference
// `mjml` npm package. It reads one JSON request per line on stdin:
//   {"mjml": "<mjml>...</mjml>", "warmup": 20, "runs": 100}
// and answers one JSON line on stdout:
//   {"ok": true, "times_ms": [...], "html_bytes": N, "errors": K, "node": "v20...", "mjml": "5.4.1"}
// Each compile is timed inside Node (process.hrtime.bigint), so the pipe to Python is not
// counted. Options match digest.render: no web fonts, comments dropped, no validation, no minify.
"use strict";

const readline = require("readline");
const mjml2html = require("mjml");
const mjmlVersion = require("mjml/package.json").version;

const OPTIONS = { fonts: {}, keepComments: false, validationLevel: "skip", minify: false, beautify: false };

async function compile(source) {
  // mjml 5 returns a Promise; mjml 4 returned the result directly. Await works for both.
  return await mjml2html(source, OPTIONS);
}

async function handle(request) {
  const warmup = request.warmup ?? 20;
  const runs = request.runs ?? 50;
  let result = null;
  for (let i = 0; i < warmup; i++) {
    result = await compile(request.mjml);
  }
  const times = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    result = await compile(request.mjml);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return {
    ok: true,
    times_ms: times,
    html_bytes: result ? Buffer.byteLength(result.html, "utf8") : 0,
    errors: result && result.errors ? result.errors.length : 0,
    node: process.version,
    mjml: mjmlVersion,
  };
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
lines.on("line", (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let answer;
    try {
      answer = await handle(JSON.parse(line));
    } catch (err) {
      answer = { ok: false, error: String((err && err.stack) || err) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  });
});
lines.on("close", () => {
  queue.then(() => process.exit(0));
});
