// The client against the real server: builds it (cargo build --release, a
// no-op when up to date), runs target/release/wspush --listen 127.0.0.1:0 and
// talks to it with Node's WebSocket (Node 20 needs --experimental-websocket).
// The same in Chromium: browser.test.mjs.
// Run: node --test --experimental-websocket web/test/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "../wspush.mjs";
import { buildServerBinary, makeWaitFor, post, startServer, stopServers } from "../test-support.mjs";

const noWebSocket = typeof WebSocket != "function" && "no global WebSocket: run node with --experimental-websocket";

before(() => {
  if (noWebSocket) return;
  buildServerBinary();
});

after(stopServers);

const waitFor = makeWaitFor({ timeout: 10000, interval: 10 });

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
  rmSync(dir, { recursive: true, force: true });
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
