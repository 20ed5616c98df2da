// The client against the real server: builds it (cargo build --release, a
// no-op when up to date), runs target/release/wspush --listen 127.0.0.1:0 and
// talks to it with Node's WebSocket (Node 20 needs --experimental-websocket).
// Run: node --test --experimental-websocket web/test/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "../wspush.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(process.env.CARGO_TARGET_DIR || join(ROOT, "target"), "release", "wspush");
const noWebSocket = typeof WebSocket != "function" && "no global WebSocket: run node with --experimental-websocket";

const servers = [];

before(() => {
  if (noWebSocket) return;
  const r = spawnSync("cargo", ["build", "--release", "--bin", "wspush"], { cwd: ROOT, encoding: "utf8" });
  if (r.error || r.status !== 0) throw new Error("cargo build --release failed:\n" + (r.stderr || r.error));
});

after(async () => {
  for (const p of servers) {
    if (p.exitCode === null) {
      p.kill("SIGTERM");
      await new Promise((r) => p.once("exit", r));
    }
  }
});

// Starts a server; resolves to its address once it prints "listening on ADDR".
function startServer(...args) {
  const p = spawn(BIN, ["--listen", "127.0.0.1:0", "--log-level", "warn", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  servers.push(p);
  return new Promise((resolve, reject) => {
    let out = "";
    p.stdout.setEncoding("utf8");
    p.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    p.once("exit", (code) => reject(new Error(`server exited (${code}) before listening:\n${out}`)));
    p.once("error", reject);
  });
}

async function post(addr, path, body) {
  const r = await fetch(`http://${addr}${path}`, {
    method: "POST",
    headers: { accept: "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${path} answered ${r.status}`);
  return r.json();
}

async function waitFor(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// Pushes until the server reaches n connections (e.g. after a re-register).
async function pushUntilSent(addr, body, n = 1) {
  await waitFor(`a push reaching ${n} clients`, async () => (await post(addr, "/push", body)).sent === n);
}

test("subscribe, receive pushes by event, reconnect after /drop, re-register, unsubscribe, close", { skip: noWebSocket, timeout: 30000 }, async () => {
  const addr = await startServer();
  const states = [];
  const c = connect(`ws://${addr}/ws`, { token: "alice", onstatechange: (s, i) => states.push([s, i && i.code]) });
  assert.equal(c.state, "connecting");
  const got = [];
  await c.subscribe("news", (m, e) => got.push([e, m]));
  await c.subscribe("chat", (m, e) => got.push([e, m]));
  assert.equal(c.state, "open");

  assert.deepEqual(await post(addr, "/push", { userId: "alice", event: "news", message: "hello" }), { sent: 1 });
  assert.deepEqual(await post(addr, "/push", { userId: "alice", event: "chat", message: { n: 1 } }), { sent: 1 });
  await post(addr, "/broadcast", { event: "news", message: [1, "two"] });
  await waitFor("three pushes", () => got.length == 3);
  assert.deepEqual(got, [
    ["news", "hello"],
    ["chat", { n: 1 }],
    ["news", [1, "two"]],
  ]);

  // Server drops the user: the client reconnects and registers both events again.
  assert.deepEqual(await post(addr, "/drop", { userId: "alice" }), { dropped: 1 });
  await waitFor("the reconnect", () => states.some(([s, code]) => s == "reconnecting" && code == 4000));
  await pushUntilSent(addr, { userId: "alice", event: "chat", message: "after drop" });
  await pushUntilSent(addr, { userId: "alice", event: "news", message: "news after drop" });
  await waitFor("pushes after the drop", () => got.some(([e]) => e == "news" && got.length > 4));
  assert.equal(c.state, "open");
  assert.deepEqual(got.slice(3, 4), [["chat", "after drop"]]);

  await c.unsubscribe("chat");
  assert.deepEqual(await post(addr, "/push", { userId: "alice", event: "chat", message: "x" }), { sent: 0 });
  assert.deepEqual(await post(addr, "/push", { userId: "alice", event: "news", message: "y" }), { sent: 1 });
  await waitFor("the last push", () => got.at(-1)[1] == "y");

  c.close();
  assert.equal(c.state, "closed");
  await waitFor("the server to see the close", async () => (await post(addr, "/push", { userId: "alice", event: "news", message: "z" })).sent === 0);
  await new Promise((r) => setTimeout(r, 1200));
  assert.deepEqual(await post(addr, "/push", { userId: "alice", event: "news", message: "z" }), { sent: 0 }, "no reconnect after close()");
  assert.equal(got.at(-1)[1], "y");
});

test("without envelope, handlers get the raw text", { skip: noWebSocket, timeout: 20000 }, async () => {
  const addr = await startServer();
  const c = connect(`ws://${addr}/ws`, { token: "bob", envelope: false });
  const got = [];
  await c.subscribe("e", (m, e) => got.push([m, e]));
  await post(addr, "/push", { userId: "bob", event: "e", message: "plain" });
  await post(addr, "/push", { userId: "bob", event: "e", message: { a: 1 } });
  await waitFor("two pushes", () => got.length == 2);
  assert.deepEqual(got, [
    ["plain", null],
    ['{"a":1}', null],
  ]);
  c.close();
});

test("a rejected token: onAuthError with a string token, one fresh token from a function", { skip: noWebSocket, timeout: 20000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "wspush-js-"));
  writeFileSync(join(dir, "tokens"), "good-token carol\n");
  const addr = await startServer("--auth-tokens", join(dir, "tokens"));

  const errors = [];
  const bad = connect(`ws://${addr}/ws`, { token: "bad-token", onAuthError: (e) => errors.push(e) });
  await assert.rejects(bad.subscribe("e", () => {}), (e) => e.code == 4401);
  await waitFor("onAuthError", () => errors.length == 1);
  assert.equal(errors[0].code, 4401);
  assert.equal(typeof errors[0].reason, "string");
  assert.equal(bad.state, "closed");

  const asked = [];
  const c = connect(`ws://${addr}/ws`, {
    token: async () => {
      asked.push(asked.length ? "good-token" : "stale-token");
      return asked.at(-1);
    },
    onAuthError: (e) => errors.push(e),
  });
  const got = [];
  c.subscribe("e", (m) => got.push(m)).catch(() => {}); // the first try is refused
  await pushUntilSent(addr, { userId: "carol", event: "e", message: "welcome" });
  await waitFor("the push", () => got.length == 1);
  assert.deepEqual(asked, ["stale-token", "good-token"]);
  assert.equal(errors.length, 1);
  c.close();
});

test("a server at its connection limit (HTTP 503): the client backs off and gets in later", { skip: noWebSocket, timeout: 20000 }, async () => {
  const addr = await startServer("--max-connections", "1");
  const a = connect(`ws://${addr}/ws`, { token: "a" });
  await a.subscribe("e", () => {});
  const states = [];
  const got = [];
  const b = connect(`ws://${addr}/ws`, {
    token: "b",
    _random: () => 0.05, // short waits for the test
    onstatechange: (s, info) => states.push([s, info]),
  });
  b.subscribe("e", (m) => got.push(m)).catch(() => {});
  await waitFor("two refused attempts", () => states.length >= 1 && b.state == "reconnecting");
  assert.equal(states[0][1].code, 1006, "closed before open");
  assert.equal(states[0][1].delay, 50, "the harder backoff: 0.05 * 1 s");
  a.close();
  await pushUntilSent(addr, { userId: "b", event: "e", message: "in" });
  await waitFor("the push", () => got.length == 1);
  assert.equal(b.state, "open");
  b.close();
});

// --- in Chromium --------------------------------------------------------------
// Headless Chromium driven over the DevTools protocol (no packages needed):
// wspush.js as a classic script, wspush.mjs as an ES module, and the demo page.
// The web/ files are served by a small static server here, so these tests do
// not depend on the Rust side serving them. Skipped when no Chromium is found
// (set CHROMIUM=/path/to/chrome, or apt-get install chromium).

function findChromium() {
  const names = process.env.CHROMIUM ? [process.env.CHROMIUM] : ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];
  for (const n of names) {
    const r = spawnSync("sh", ["-c", `command -v "${n}"`], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}
const CHROMIUM = noWebSocket ? null : findChromium();
const noBrowser = noWebSocket || (!CHROMIUM && "no Chromium found (set CHROMIUM or install chromium)");

const WEB = fileURLToPath(new URL("..", import.meta.url));
const PAGES = {
  "/": ["text/html", () => readFileSync(join(WEB, "index.html"))],
  "/wspush.js": ["text/javascript", () => readFileSync(join(WEB, "wspush.js"))],
  "/wspush.mjs": ["text/javascript", () => readFileSync(join(WEB, "wspush.mjs"))],
  "/classic.html": ["text/html", () => '<!doctype html><script src="/wspush.js"></script>'],
  "/module.html": [
    "text/html",
    () => '<!doctype html><script type="module">import { connect } from "/wspush.mjs"; window.mod = { connect };</script>',
  ],
};

async function staticServer() {
  const srv = createServer((req, res) => {
    const page = PAGES[req.url];
    if (!page) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": page[0] }).end(page[1]());
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  return srv;
}

async function launchChromium() {
  const dir = mkdtempSync(join(tmpdir(), "wspush-chromium-"));
  const p = spawn(
    CHROMIUM,
    ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0", `--user-data-dir=${dir}`, "about:blank"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  servers.push(p);
  const browserUrl = await new Promise((resolve, reject) => {
    let err = "";
    p.stderr.setEncoding("utf8");
    p.stderr.on("data", (d) => {
      err += d;
      const m = /DevTools listening on (ws:\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    p.once("exit", (code) => reject(new Error(`chromium exited (${code}):\n${err}`)));
  });
  const targets = await (await fetch(`http://127.0.0.1:${new URL(browserUrl).port}/json/list`)).json();
  const ws = new WebSocket(targets.find((t) => t.type == "page").webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let lastId = 0;
  const waiting = new Map();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    m.error ? w[1](new Error(m.error.message)) : w[0](m.result);
  };
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      waiting.set(++lastId, [resolve, reject]);
      ws.send(JSON.stringify({ id: lastId, method, params }));
    });
  const evaluate = async (expression) => {
    const r = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error("in the page: " + (r.exceptionDetails.exception?.description || r.exceptionDetails.text));
    return r.result.value;
  };
  const goto = async (url) => {
    await send("Page.navigate", { url });
    await waitFor("page load", async () => (await evaluate("location.href + ' ' + document.readyState")) == url + " complete");
  };
  const close = async () => {
    ws.close();
    p.kill("SIGTERM");
    await new Promise((r) => (p.exitCode === null ? p.once("exit", r) : r()));
    rmSync(dir, { recursive: true, force: true });
  };
  return { send, evaluate, goto, close };
}

test("in Chromium: wspush.js as a classic script, wspush.mjs as an ES module", { skip: noBrowser, timeout: 60000 }, async () => {
  const addr = await startServer();
  const web = await staticServer();
  const b = await launchChromium();
  try {
    const base = `http://127.0.0.1:${web.address().port}`;
    await b.goto(base + "/classic.html");
    assert.equal(await b.evaluate("typeof wspush.connect"), "function");
    assert.equal(await b.evaluate("typeof connect"), "undefined", "no other global");

    await b.goto(base + "/module.html");
    assert.equal(await b.evaluate("typeof mod.connect"), "function");
    // The module's connect works end to end.
    await b.evaluate(`window.got = []; window.c = mod.connect("ws://${addr}/ws", { token: "mod" });
      c.subscribe("e", (m, e) => got.push([m, e])).then(() => c.state)`);
    assert.deepEqual(await post(addr, "/push", { userId: "mod", event: "e", message: "from node" }), { sent: 1 });
    await waitFor("the push in the page", async () => (await b.evaluate("got.length")) == 1);
    assert.deepEqual(await b.evaluate("got"), [["from node", "e"]]);
    await b.evaluate("c.close(), c.state");
  } finally {
    await b.close();
    web.close();
  }
});

test("in Chromium: the demo page subscribes, shows pushes, its curl command works, it reconnects", { skip: noBrowser, timeout: 60000 }, async () => {
  const addr = await startServer();
  const web = await staticServer();
  const b = await launchChromium();
  const $ = (sel, prop = "textContent") => b.evaluate(`document.querySelector(${JSON.stringify(sel)}).${prop}`);
  const pushes = () => b.evaluate(`[...document.querySelectorAll("#log li.push")].map(li => [li.querySelector(".event").textContent, li.querySelector(".message").textContent])`);
  try {
    const base = `http://127.0.0.1:${web.address().port}`;
    await b.goto(base + "/");
    assert.equal(await $("#url", "value"), `ws://127.0.0.1:${web.address().port}/ws`, "default: this host");
    assert.equal(await $("#state"), "idle");
    await b.evaluate(`(() => {
      const set = (id, v) => { const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event("input")); };
      set("url", "ws://${addr}/ws"); set("token", "it's me"); set("event", "news");
    })()`);
    const curl = await $("#curl");
    assert.equal(curl, `curl -d '{"userId":"it'\\''s me","event":"news","message":"hello"}' http://${addr}/push`);

    await b.evaluate(`document.getElementById("subscribe").click()`);
    await waitFor("state open", async () => (await $("#state")) == "open");
    assert.equal(await $("#subs"), "news");
    await waitFor("subscribed", async () => (await $("#log")).includes("subscribed"));

    // The page's own curl command, run as shown.
    const r = spawnSync("sh", ["-c", curl], { encoding: "utf8" });
    assert.equal(r.stdout, "message sent to 1 clients");
    await post(addr, "/push", { userId: "it's me", event: "news", message: { n: 2 } });
    await waitFor("two pushes in the log", async () => (await pushes()).length == 2);
    assert.deepEqual(await pushes(), [
      ["news", '{"n":2}'],
      ["news", "hello"],
    ]);

    await post(addr, "/drop", { userId: "it's me" });
    await waitFor("the reconnect in the log", async () => (await $("#log")).includes("reconnecting (4000"));
    await pushUntilSent(addr, { userId: "it's me", event: "news", message: "again" });
    await waitFor("the push after the reconnect", async () => (await pushes())[0][1] == "again");
    assert.equal(await $("#state"), "open");

    if (process.env.WSPUSH_SCREENSHOT) {
      await b.send("Emulation.setDeviceMetricsOverride", { width: 390, height: 844, deviceScaleFactor: 2, mobile: true });
      const shot = await b.send("Page.captureScreenshot", { format: "png" });
      writeFileSync(process.env.WSPUSH_SCREENSHOT, Buffer.from(shot.data, "base64"));
    }

    await b.evaluate(`document.getElementById("unsubscribe").click()`);
    await waitFor("unsubscribed", async () => (await $("#log")).includes("unsubscribed"));
    assert.deepEqual(await post(addr, "/push", { userId: "it's me", event: "news", message: "x" }), { sent: 0 });
    await b.evaluate(`document.getElementById("close").click()`);
    assert.equal(await $("#state"), "closed");
  } finally {
    await b.close();
    web.close();
  }
});
