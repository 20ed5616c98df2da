// Unit tests of the wspush browser client's state machine, against a fake
// WebSocket and a fake clock. Run: node --test --experimental-websocket web/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import vm from "node:vm";
import { gzipSync } from "node:zlib";
import { connect } from "../wspush.mjs";

const SRC_PATH = new URL("../wspush.js", import.meta.url);

class FakeWS {
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closedWith = null;
    this.constructor.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code) {
    this.closedWith = code;
    // A real socket reports its own close later; the client must ignore it.
    queueMicrotask(() => this.onclose && this.onclose({ code: 1005, reason: "" }));
  }
  // Test side: play the server.
  open() {
    this.onopen({});
  }
  recv(value) {
    this.onmessage({ data: typeof value == "string" ? value : JSON.stringify(value) });
  }
  error() {
    this.onerror({});
  }
  serverClose(code, reason = "") {
    this.onclose({ code, reason });
  }
  reply(cmd, ok = true, code, error) {
    this.recv(ok ? { id: cmd.id, ok: true } : { id: cmd.id, ok: false, code, error });
  }
  replyAll() {
    for (const cmd of this.sent.splice(0)) this.reply(cmd);
  }
}

// A scripted EventSource: the test plays the server with open(), error(),
// emit(type, data), push(event, message) and serverClose(code, reason).
class FakeES {
  constructor(url) {
    this.url = url;
    this.closed = false;
    this.listeners = new Map();
    this.constructor.all.push(this);
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn); // a listener added twice runs once, as in a browser
  }
  close() {
    this.closed = true;
  }
  get events() {
    return new URL(this.url).searchParams.getAll("event");
  }
  open() {
    this.onopen({});
  }
  error() {
    this.onerror({});
  }
  // Named events go to their listeners only (no onmessage), as in a browser.
  emit(type, data) {
    for (const fn of this.listeners.get(type) || []) fn({ type, data: typeof data == "string" ? data : JSON.stringify(data) });
  }
  push(event, message) {
    this.emit(event, { event, message });
  }
  // The server's last event, then the end of the stream (an error, unless
  // the client closed the EventSource first).
  serverClose(code, reason = "") {
    this.emit("close", { code, reason });
    if (!this.closed) this.onerror({});
  }
}

// Fake timers and time: advance() runs due timers in order.
function fakeClock() {
  let t = 0,
    next = 0;
  const timers = new Map();
  return {
    now: () => t,
    setTimeout(fn, ms) {
      timers.set(++next, { fn, at: t + ms, ms });
      return next;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    pending: () => [...timers.values()],
    async advance(ms) {
      const end = t + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        t = due[1].at;
        due[1].fn();
        await settle();
      }
      t = end;
      await settle();
    },
  };
}

// Let promise callbacks (token resolution, socket creation) run.
const settle = () => new Promise((r) => setImmediate(r));

// withES: also give the client an EventSource (streams, lastES).
function setup(opts = {}, url = "ws://h/ws", withES = false) {
  const WS = class extends FakeWS {};
  WS.all = [];
  const ES = class extends FakeES {};
  ES.all = [];
  const clock = fakeClock();
  const states = [];
  const c = connect(url, {
    token: "tok",
    _WebSocket: WS,
    ...(withES && { _EventSource: ES }),
    _setTimeout: clock.setTimeout,
    _clearTimeout: clock.clearTimeout,
    _now: clock.now,
    _random: () => 1,
    onstatechange: (s, info) => states.push([s, info]),
    ...opts,
  });
  const last = () => WS.all[WS.all.length - 1];
  const lastES = () => ES.all[ES.all.length - 1];
  return { c, clock, states, last, sockets: WS.all, lastES, streams: ES.all };
}

// A client with transport "sse" (and an EventSource).
const setupSse = (opts = {}, url) => setup({ transport: "sse", ...opts }, url, true);

// Outcome of a promise without waiting for it: "pending", "ok" or the error.
function watch(p) {
  const w = { v: "pending" };
  p.then(
    () => (w.v = "ok"),
    (e) => (w.v = e),
  );
  return w;
}

// --- loading: classic script, ES module, CommonJS -------------------------

test("wspush.js runs as a classic script and defines the global wspush", () => {
  const src = readFileSync(SRC_PATH, "utf8");
  const ctx = vm.createContext({ setTimeout, clearTimeout });
  vm.runInContext(src, ctx, { filename: "wspush.js" });
  assert.equal(typeof ctx.wspush.connect, "function");
  assert.equal(vm.runInContext("typeof connect", ctx), "undefined", "no other globals");
});

test("wspush.js evaluates as an ES module body, and wspush.mjs exports connect", async () => {
  const src = readFileSync(SRC_PATH, "utf8");
  delete globalThis.wspush;
  await import("data:text/javascript," + encodeURIComponent(src));
  assert.equal(typeof globalThis.wspush.connect, "function");
  const mod = await import("../wspush.mjs");
  assert.deepEqual(Object.keys(mod), ["connect"]);
  assert.equal(typeof mod.connect, "function");
});

test("wspush.js works through require() and named import of CommonJS", async () => {
  const require = createRequire(import.meta.url);
  assert.equal(typeof require("../wspush.js").connect, "function");
  const { connect: c2 } = await import("../wspush.js");
  assert.equal(typeof c2, "function");
});

// What a page downloads (behind a compressing proxy): keep it small.
test("wspush.js stays under 4 KiB gzipped", () => {
  const gz = gzipSync(readFileSync(SRC_PATH), { level: 9 }).length;
  assert.ok(gz < 4096, `wspush.js is ${gz} bytes gzipped`);
});

test("connect throws when there is no WebSocket", () => {
  const ctx = vm.createContext({ setTimeout, clearTimeout });
  vm.runInContext(readFileSync(SRC_PATH, "utf8"), ctx);
  assert.throws(() => ctx.wspush.connect("ws://h/ws", {}), /no WebSocket/);
});

// --- URL --------------------------------------------------------------------

test("envelope=1 is added to the URL, respecting an existing query", async () => {
  const cases = [
    ["ws://h/ws", "ws://h/ws?envelope=1"],
    ["ws://h/ws?a=1", "ws://h/ws?a=1&envelope=1"],
    ["ws://h/ws?", "ws://h/ws?envelope=1"],
    ["ws://h/ws?a=1&", "ws://h/ws?a=1&envelope=1"],
    ["wss://h:8/p/ws?envelope=1", "wss://h:8/p/ws?envelope=1"],
    ["ws://h/ws?x=2&envelope=1&y=3", "ws://h/ws?x=2&envelope=1&y=3"],
    ["ws://h/ws#f", "ws://h/ws?envelope=1#f"],
  ];
  for (const [url, want] of cases) {
    const { last } = setup({}, url);
    await settle();
    assert.equal(last().url, want, url);
  }
  const { last } = setup({ envelope: false }, "ws://h/ws?a=1");
  await settle();
  assert.equal(last().url, "ws://h/ws?a=1", "envelope: false leaves the URL alone");
});

// --- states, registering, replies ------------------------------------------

test("state goes connecting -> open; subscribes made before open are sent on open", async () => {
  const { c, states, last } = setup();
  assert.equal(c.state, "connecting");
  const a = watch(c.subscribe("a", () => {}));
  const b = watch(c.subscribe("b", () => {}));
  await settle();
  assert.equal(last().sent.length, 0);
  last().open();
  assert.equal(c.state, "open");
  assert.deepEqual(states, [["open", undefined]]);
  assert.deepEqual(last().sent, [
    { token: "tok", event: "a", id: 1 },
    { token: "tok", event: "b", id: 2 },
  ]);
  last().replyAll();
  await settle();
  assert.equal(a.v, "ok");
  assert.equal(b.v, "ok");
});

test("subscribe and unsubscribe settle by the id of the server's reply", async () => {
  const { c, last } = setup();
  await settle();
  last().open();
  const a = watch(c.subscribe("a", () => {}));
  const b = watch(c.subscribe("b", () => {}));
  const [ra, rb] = last().sent;
  assert.deepEqual(ra, { token: "tok", event: "a", id: 1 });
  last().reply(rb); // out of order
  await settle();
  assert.equal(b.v, "ok");
  assert.equal(a.v, "pending");
  last().reply(ra, false, 4429, "too many events");
  await settle();
  assert.ok(a.v instanceof Error);
  assert.equal(a.v.code, 4429);
  assert.equal(a.v.message, "too many events");

  last().sent.length = 0;
  const u = watch(c.unsubscribe("b"));
  assert.deepEqual(last().sent, [{ type: "unregister", event: "b", id: 3 }]);
  last().recv({ id: 99, ok: true }); // someone else's id: ignored
  await settle();
  assert.equal(u.v, "pending");
  last().replyAll();
  await settle();
  assert.equal(u.v, "ok");

  const bad = watch(c.unsubscribe(""));
  last().reply(last().sent.pop(), false, 4400, "missing event");
  await settle();
  assert.equal(bad.v.code, 4400);
});

test("a refused subscription is forgotten: not dispatched, not re-registered", async () => {
  const { c, clock, last } = setup();
  await settle();
  last().open();
  const got = [];
  c.subscribe("a", (m) => got.push(m)).catch(() => {})
  c.subscribe("b", (m) => got.push(m)).catch(() => {});
  const [ra, rb] = last().sent;
  last().reply(ra, false, 4429, "too many");
  last().reply(rb);
  last().recv({ event: "a", message: "x" });
  last().recv({ event: "b", message: "y" });
  assert.deepEqual(got, ["y"]);
  last().serverClose(4000);
  await clock.advance(1000);
  last().open();
  assert.deepEqual(
    last().sent.map((x) => x.event),
    ["b"],
  );
});

test("unsubscribe stops the handler at once and resolves locally when not connected", async () => {
  const { c, last } = setup();
  await settle();
  const got = [];
  const early = watch(c.subscribe("a", (m) => got.push(m)));
  const u = watch(c.unsubscribe("a"));
  await settle();
  assert.equal(u.v, "ok", "nothing to undo on the server yet");
  assert.equal(early.v.code, 0, "the unsent subscribe is cancelled");
  last().open();
  assert.deepEqual(last().sent, [], "not registered");

  c.subscribe("b", (m) => got.push(m)).catch(() => {});
  last().replyAll();
  c.unsubscribe("b");
  last().recv({ event: "b", message: "in flight" });
  assert.deepEqual(got, []);
});

// --- dispatch -------------------------------------------------------------

test("envelope mode hands each push to its event's handler, with parsed values", async () => {
  const { c, last } = setup();
  await settle();
  last().open();
  const got = [];
  c.subscribe("a", (m, e) => got.push(["A", m, e])).catch(() => {});
  c.subscribe("b", (m, e) => got.push(["B", m, e])).catch(() => {});
  last().replyAll();
  last().recv({ event: "a", message: "hi" });
  last().recv({ event: "b", message: { n: 1 } });
  last().recv({ event: "b", message: [1, "2"] });
  last().recv({ event: "a", message: 42 });
  last().recv({ event: "zzz", message: "not subscribed" });
  last().recv("not json");
  last().recv({ id: 1, ok: true }); // stale reply
  assert.deepEqual(got, [
    ["A", "hi", "a"],
    ["B", { n: 1 }, "b"],
    ["B", [1, "2"], "b"],
    ["A", 42, "a"],
  ]);
});

test("subscribing again replaces the handler", async () => {
  const { c, last } = setup();
  await settle();
  last().open();
  const got = [];
  c.subscribe("a", () => got.push(1)).catch(() => {});
  c.subscribe("a", () => got.push(2)).catch(() => {});
  last().replyAll();
  last().recv({ event: "a", message: "x" });
  assert.deepEqual(got, [2]);
});

test("without envelope every handler gets the raw text, event null; replies still settle", async () => {
  const { c, last } = setup({ envelope: false });
  await settle();
  last().open();
  const got = [];
  const a = watch(c.subscribe("a", (m, e) => got.push(["A", m, e])));
  c.subscribe("b", (m, e) => got.push(["B", m, e])).catch(() => {});
  last().replyAll();
  await settle();
  assert.equal(a.v, "ok");
  assert.deepEqual(got, [], "replies are not pushes");
  last().recv("plain");
  last().recv('{"event":"a","message":"x"}');
  last().recv('{"id":7,"ok":true}'); // no such pending id: a push
  assert.deepEqual(got, [
    ["A", "plain", null],
    ["B", "plain", null],
    ["A", '{"event":"a","message":"x"}', null],
    ["B", '{"event":"a","message":"x"}', null],
    ["A", '{"id":7,"ok":true}', null],
    ["B", '{"id":7,"ok":true}', null],
  ]);
});

// --- reconnect and backoff --------------------------------------------------

// Drops the connection n times after it opened; returns the reconnect delays.
async function delaysAfterDrops(t, n, code) {
  const delays = [];
  for (let i = 0; i < n; i++) {
    t.last().open();
    t.last().serverClose(code);
    const [timer] = t.clock.pending();
    delays.push(timer.ms);
    await t.clock.advance(timer.ms);
  }
  return delays;
}

test("backoff doubles from 0.5 s, is capped at 30 s, with full jitter", async () => {
  let r = 1;
  const t = setup({ _random: () => r });
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  assert.deepEqual(
    await delaysAfterDrops(t, 9, 1006),
    [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000],
  );
  r = 0.25;
  assert.deepEqual(await delaysAfterDrops(t, 1, 1006), [7500], "random * window");
  r = 0;
  assert.deepEqual(await delaysAfterDrops(t, 1, 1006), [0]);
  assert.equal(t.sockets.length, 12);
});

test("attempts closed before opening and close 1013 back off twice as fast", async () => {
  const t = setup();
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  const delays = [];
  for (let i = 0; i < 2; i++) {
    t.last().serverClose(1006); // handshake failed, e.g. HTTP 503
    delays.push(t.clock.pending()[0].ms);
    await t.clock.advance(delays[i]);
  }
  assert.deepEqual(delays, [1000, 4000]);
  assert.equal(t.c.state, "reconnecting");

  const u = setup();
  u.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  assert.deepEqual(await delaysAfterDrops(u, 3, 1013), [1000, 4000, 16000]);
});

// A refused origin (HTTP 403) shows in a browser only as 1006 before open,
// like a server that is down: the client cannot tell, so it slows down.
test("3 failures in a row before opening: retries every 15-30 s, and onstatechange says so once", async () => {
  let r = 1;
  const t = setup({ _random: () => r });
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  const delays = [];
  for (let i = 0; i < 6; i++) {
    if (i == 4) r = 0;
    t.last().error(); // how Chromium reports a refused handshake
    delays.push(t.clock.pending()[0].ms);
    await t.clock.advance(delays[i]);
  }
  assert.deepEqual(delays, [1000, 4000, 30000, 30000, 15000, 15000], "the third failure jumps to the cap");
  assert.equal(t.c.state, "reconnecting");
  const why = "no connection after 3 attempts (origin not allowed? wrong URL? server down?); retrying every 15-30 s";
  assert.deepEqual(t.states, [
    ["reconnecting", { code: 1006, reason: "connection failed", delay: 1000 }],
    ["reconnecting", { code: 1006, reason: why, delay: 30000 }],
  ]);

  // An attempt that opens starts the count again, and the backoff goes on
  // from where it was (the connection did not stay open for 10 s).
  t.last().open();
  t.last().serverClose(1006);
  assert.deepEqual(t.states.at(-1), ["reconnecting", { code: 1006, reason: "", delay: 0 }]);
  r = 1;
  await t.clock.advance(0);
  for (const want of [30000, 30000]) {
    t.last().error();
    assert.equal(t.clock.pending()[0].ms, want);
    await t.clock.advance(want);
  }
  assert.equal(t.states.length, 4, "silent until the third failure in a row");
  t.last().error();
  assert.equal(t.states.length, 5);
  assert.equal(t.states.at(-1)[1].reason, why);

  // Failures after an open never count: a server that drops open
  // connections keeps the usual full jitter (random 0 -> 0 ms).
  const u = setup({ _random: () => 0 });
  u.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  assert.deepEqual(await delaysAfterDrops(u, 5, 1006), [0, 0, 0, 0, 0]);
  assert.equal(u.states.length, 10, "open and reconnecting, nothing else");
});

test("a connection open for 10 s resets the backoff; a shorter one does not", async () => {
  const t = setup();
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  assert.deepEqual(await delaysAfterDrops(t, 3, 1006), [500, 1000, 2000]);
  t.last().open();
  await t.clock.advance(9999);
  t.last().serverClose(1006);
  assert.equal(t.clock.pending()[0].ms, 4000, "9.999 s is not stable");
  await t.clock.advance(4000);
  t.last().open();
  await t.clock.advance(10000);
  t.last().serverClose(1001);
  assert.equal(t.clock.pending()[0].ms, 500, "reset after 10 s");
});

test("an error event counts as close 1006 at once; the late close event is ignored", async () => {
  const t = setup();
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  t.last().error(); // handshake refused (e.g. 503), close event not (yet) sent
  assert.deepEqual(t.states, [["reconnecting", { code: 1006, reason: "connection failed", delay: 1000 }]]);
  assert.equal(t.last().closedWith, undefined, "close() without a code");
  await settle(); // FakeWS.close() reports its close event
  assert.equal(t.clock.pending().length, 1, "one retry scheduled, not two");
  await t.clock.advance(1000);
  t.last().open();
  t.last().error(); // after open: +1 to the 2 of the failed handshake
  assert.deepEqual(t.states.at(-1), ["reconnecting", { code: 1006, reason: "connection failed", delay: 2000 }]);
  assert.equal(t.clock.pending().length, 1);
});

test("state transitions and info through a drop and reconnect", async () => {
  const t = setup({ onstatechange: undefined });
  const seen = [];
  t.c.onstatechange = (s, info) => seen.push([s, info]); // set on the client
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  t.last().open();
  t.last().serverClose(4000, "dropped");
  assert.equal(t.c.state, "reconnecting");
  await t.clock.advance(500);
  assert.equal(t.c.state, "reconnecting", "still, while the new attempt connects");
  t.last().open();
  assert.deepEqual(seen, [
    ["open", undefined],
    ["reconnecting", { code: 4000, reason: "dropped", delay: 500 }],
    ["open", undefined],
  ]);
});

test("after a reconnect every event is registered again and handlers keep working", async () => {
  let n = 0;
  const t = setup({ token: () => "fresh" + ++n });
  const got = [];
  t.c.subscribe("a", (m, e) => got.push([m, e])).catch(() => {});
  t.c.subscribe("b", (m, e) => got.push([m, e])).catch(() => {});
  await settle();
  t.last().open();
  assert.deepEqual(t.last().sent, [
    { token: "fresh1", event: "a", id: 1 },
    { token: "fresh1", event: "b", id: 2 },
  ]);
  t.last().replyAll();
  t.last().serverClose(4000);
  await t.clock.advance(500);
  assert.equal(t.sockets.length, 2);
  t.last().open();
  assert.deepEqual(t.last().sent, [
    { token: "fresh2", event: "a", id: 3 },
    { token: "fresh2", event: "b", id: 4 },
  ]);
  t.last().replyAll();
  t.last().recv({ event: "b", message: "after" });
  assert.deepEqual(got, [["after", "b"]]);
});

test("a drop before the reply rejects a pending subscribe (kept) and resolves a pending unsubscribe", async () => {
  const t = setup();
  await settle();
  t.last().open();
  t.c.subscribe("gone", () => {}).catch(() => {});
  t.last().replyAll();
  const s = watch(t.c.subscribe("a", () => {}));
  const u = watch(t.c.unsubscribe("gone"));
  t.last().serverClose(1006);
  await settle();
  assert.ok(s.v instanceof Error);
  assert.equal(s.v.code, 1006);
  assert.equal(u.v, "ok");
  await t.clock.advance(500);
  t.last().open();
  assert.deepEqual(
    t.last().sent.map((x) => x.event),
    ["a"],
  );
});

test("a subscribe waiting for the connection rejects if that attempt fails", async () => {
  const t = setup();
  const s = watch(t.c.subscribe("a", () => {}));
  await settle();
  t.last().serverClose(1006);
  await settle();
  assert.equal(s.v.code, 1006);
  await t.clock.advance(1000);
  t.last().open();
  assert.equal(t.last().sent[0].event, "a", "still subscribed");
});

test("with nothing subscribed the client waits for subscribe() before reconnecting", async () => {
  const t = setup();
  await settle();
  t.last().open();
  t.last().serverClose(4408, "register timeout");
  assert.equal(t.c.state, "reconnecting");
  assert.deepEqual(t.clock.pending(), []);
  await t.clock.advance(60000);
  assert.equal(t.sockets.length, 1);
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  assert.equal(t.sockets.length, 2);
  t.last().open();
  assert.equal(t.last().sent[0].event, "a");
});

test("a token function that fails counts as a failed attempt", async () => {
  let n = 0;
  const t = setup({
    token: async () => {
      if (++n == 1) throw new Error("token service down");
      return "ok";
    },
  });
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  assert.equal(t.sockets.length, 0);
  assert.equal(t.c.state, "reconnecting");
  assert.deepEqual(t.states[0], ["reconnecting", { code: 0, reason: "token service down", delay: 1000 }]);
  await t.clock.advance(1000);
  assert.equal(t.sockets.length, 1);
  t.last().open();
  assert.equal(t.last().sent[0].token, "ok");
});

// --- auth -------------------------------------------------------------------

test("a string token rejected by reply: onAuthError, closed, never retried", async () => {
  const errs = [];
  const t = setup({ onAuthError: (e) => errs.push(e) });
  const s = watch(t.c.subscribe("a", () => {}));
  await settle();
  t.last().open();
  t.last().reply(t.last().sent[0], false, 4401, "token rejected");
  await settle();
  assert.deepEqual(errs, [{ code: 4401, reason: "token rejected" }]);
  assert.equal(t.c.state, "closed");
  assert.equal(s.v.code, 4401);
  assert.equal(t.last().closedWith, 1000);
  await t.clock.advance(120000);
  assert.equal(t.sockets.length, 1);
  assert.equal((await Promise.allSettled([t.c.subscribe("b", () => {})]))[0].status, "rejected");
});

test("a string token refused by close 4401 or 4403: onAuthError, closed", async () => {
  for (const code of [4401, 4403]) {
    const t = setup({ onAuthError: undefined });
    const errs = [];
    t.c.onAuthError = (e) => errs.push(e); // set on the client
    t.c.subscribe("a", () => {}).catch(() => {})
    await settle();
    t.last().open();
    t.last().serverClose(code, "nope");
    assert.deepEqual(errs, [{ code, reason: "nope" }]);
    assert.equal(t.c.state, "closed");
    assert.deepEqual(t.states.at(-1), ["closed", { code, reason: "nope" }]);
    await t.clock.advance(120000);
    assert.equal(t.sockets.length, 1);
  }
});

test("a token function is asked before every connect, and once more after a rejection", async () => {
  const errs = [];
  const tokens = ["t1", "t2", "t3", "t4"];
  let calls = 0;
  const t = setup({
    token: () => Promise.resolve(tokens[calls++]),
    onAuthError: (e) => errs.push(e),
  });
  const got = [];
  t.c.subscribe("a", (m) => got.push(m)).catch(() => {})
  await settle();
  assert.equal(calls, 1);
  t.last().open();
  t.last().reply(t.last().sent[0], false, 4401, "expired");
  await settle();
  assert.equal(calls, 2, "fresh token asked at once, no backoff");
  assert.equal(t.sockets.length, 2);
  assert.equal(t.sockets[0].closedWith, 1000);
  assert.equal(t.c.state, "reconnecting");
  t.last().open();
  assert.deepEqual(t.last().sent, [{ token: "t2", event: "a", id: 2 }]);
  t.last().reply(t.last().sent[0], false, 4401, "still bad");
  await settle();
  assert.deepEqual(errs, [{ code: 4401, reason: "still bad" }]);
  assert.equal(t.c.state, "closed");
  await t.clock.advance(120000);
  assert.equal(calls, 2);
  assert.equal(t.sockets.length, 2);
});

test("the fresh-token allowance comes back after a successful register", async () => {
  const errs = [];
  let calls = 0;
  const t = setup({ token: () => "t" + ++calls, onAuthError: (e) => errs.push(e) });
  t.c.subscribe("a", () => {}).catch(() => {})
  await settle();
  for (let round = 0; round < 3; round++) {
    t.last().open();
    t.last().replyAll(); // ok: token accepted
    t.last().serverClose(4401, "expired later"); // e.g. at the next register
    await settle();
    assert.equal(t.c.state, "reconnecting");
  }
  assert.deepEqual(errs, []);
  assert.equal(calls, 4);
});

// --- close ------------------------------------------------------------------

test("close 4001 (dropped with reconnect: false) ends the client for good; 4000 reconnects", async () => {
  const t = setup({ onclose: undefined });
  const seen = [];
  t.c.onclose = (e) => seen.push(e); // set on the client
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  t.last().open();
  t.last().replyAll();
  t.last().serverClose(4000, "dropped");
  assert.equal(t.c.state, "reconnecting");
  await t.clock.advance(500);
  assert.equal(t.sockets.length, 2);
  t.last().open();
  const pending = watch(t.c.subscribe("b", () => {}));
  t.last().serverClose(4001, "dropped for good");
  await settle();
  assert.equal(t.c.state, "closed");
  assert.deepEqual(t.states.at(-1), ["closed", { code: 4001, reason: "dropped for good" }]);
  assert.deepEqual(seen, [{ code: 4001, reason: "dropped for good" }]);
  assert.equal(pending.v.code, 4001);
  assert.deepEqual(t.clock.pending(), []);
  await t.clock.advance(120000);
  assert.equal(t.sockets.length, 2, "never reconnects");
  assert.equal((await Promise.allSettled([t.c.subscribe("c", () => {})]))[0].status, "rejected");

  // As an option; and a token function is not asked again.
  let calls = 0;
  const got = [];
  const u = setup({ token: () => "t" + ++calls, onclose: (e) => got.push(e) });
  u.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  u.last().open();
  u.last().serverClose(4001, "bye");
  await u.clock.advance(120000);
  assert.deepEqual(got, [{ code: 4001, reason: "bye" }]);
  assert.equal(calls, 1);
  assert.equal(u.sockets.length, 1);
});

test("close() closes with 1000, rejects pending promises and never reconnects", async () => {
  const t = setup();
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  t.last().open();
  const s = watch(t.c.subscribe("b", () => {}));
  t.c.close();
  await settle();
  assert.equal(t.c.state, "closed");
  assert.equal(t.last().closedWith, 1000);
  assert.equal(s.v.code, 1000);
  assert.deepEqual(t.states.at(-1), ["closed", { code: 1000, reason: "client closed" }]);
  await t.clock.advance(120000);
  assert.equal(t.sockets.length, 1);
  t.c.close(); // twice is fine
  assert.equal(t.states.length, 2);
  await t.c.unsubscribe("a"); // resolves: nothing is registered
});

test("close() during the backoff wait or the token fetch stops the next attempt", async () => {
  const t = setup();
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  t.last().open();
  t.last().serverClose(1006);
  assert.equal(t.clock.pending().length, 1);
  t.c.close();
  assert.deepEqual(t.clock.pending(), []);
  await t.clock.advance(60000);
  assert.equal(t.sockets.length, 1);

  let release;
  const u = setup({ token: () => new Promise((r) => (release = r)) });
  u.c.close();
  release("late");
  await settle();
  assert.equal(u.sockets.length, 0);
  assert.equal(u.c.state, "closed");
});

test("close() while connecting closes the socket and ignores its late events", async () => {
  const t = setup();
  const got = [];
  t.c.subscribe("a", (m) => got.push(m)).catch(() => {})
  await settle();
  const ws = t.last();
  t.c.close();
  assert.equal(ws.closedWith, 1000);
  ws.open();
  ws.recv({ event: "a", message: "late" });
  ws.serverClose(1006);
  assert.equal(t.c.state, "closed");
  assert.deepEqual(got, []);
  assert.deepEqual(t.clock.pending(), []);
});

// --- Server-Sent Events (transport "sse", and "auto"'s fallback) ------------

test("connect with transport sse throws when there is no EventSource", () => {
  assert.throws(() => connect("ws://h/ws", { transport: "sse", _WebSocket: FakeWS }), /no EventSource/);
});

test("sse: no stream until subscribe; subscribes in one tick open one stream; promises resolve on open", async () => {
  const t = setupSse();
  await settle();
  assert.equal(t.streams.length, 0, "a stream needs at least one event");
  assert.equal(t.c.state, "connecting");
  assert.equal(t.c.transport, "sse");
  const got = [];
  const a = watch(t.c.subscribe("a", (m, e) => got.push([m, e])));
  const b = watch(t.c.subscribe("b", (m, e) => got.push([m, e])));
  await settle();
  assert.equal(t.streams.length, 1);
  assert.equal(t.lastES().url, "http://h/sse?envelope=1&token=tok&event=a&event=b");
  assert.equal(a.v, "pending");
  t.lastES().open();
  await settle();
  assert.equal(a.v, "ok");
  assert.equal(b.v, "ok");
  assert.equal(t.c.state, "open");
  assert.deepEqual(t.states, [["open", undefined]]);
  t.lastES().push("a", "hello");
  t.lastES().push("b", { n: 1 });
  assert.deepEqual(got, [
    ["hello", "a"],
    [{ n: 1 }, "b"],
  ]);
  assert.equal(t.sockets.length, 0, "no WebSocket at all");
});

test("sse: the stream URL: sseUrl from ws:// and wss:// URLs, queries kept but envelope, encoded token and events", async () => {
  const cases = [
    ["ws://h/ws", undefined, "http://h/sse?envelope=1&token=tok&event=e"],
    ["wss://h:8443/ws", undefined, "https://h:8443/sse?envelope=1&token=tok&event=e"],
    ["ws://h:1/app/ws?x=1&y=2#frag", undefined, "http://h:1/sse?x=1&y=2&envelope=1&token=tok&event=e"],
    ["wss://h/ws?envelope=1", undefined, "https://h/sse?envelope=1&token=tok&event=e"],
    ["ws://h/ws?envelope=1&y=2", undefined, "http://h/sse?y=2&envelope=1&token=tok&event=e"],
    ["ws://h/ws?x=1&envelope=1", undefined, "http://h/sse?x=1&envelope=1&token=tok&event=e"],
    ["ws://[::1]:12345", undefined, "http://[::1]:12345/sse?envelope=1&token=tok&event=e"],
    ["ws://h/ws", "https://other.example/stream", "https://other.example/stream?envelope=1&token=tok&event=e"],
    ["ws://h/ws", "https://o/s?k=v&envelope=0#x", "https://o/s?k=v&envelope=1&token=tok&event=e"],
  ];
  for (const [url, sseUrl, want] of cases) {
    const t = setupSse({ sseUrl }, url);
    t.c.subscribe("e", () => {}).catch(() => {});
    await settle();
    assert.equal(t.lastES().url, want, `${url} ${sseUrl}`);
  }
  // Token and event names are encoded; a token function is asked per stream.
  let n = 0;
  const t = setupSse({ token: () => Promise.resolve("a b&c=" + ++n) });
  t.c.subscribe("x y/é&", () => {}).catch(() => {});
  await settle();
  assert.equal(t.lastES().url, "http://h/sse?envelope=1&token=a%20b%26c%3D1&event=x%20y%2F%C3%A9%26");
  assert.deepEqual(t.lastES().events, ["x y/é&"]);
  // No token: an empty one (the server refuses it), never "undefined".
  const u = setupSse({ token: undefined });
  u.c.subscribe("e", () => {}).catch(() => {});
  await settle();
  assert.equal(new URL(u.lastES().url).searchParams.get("token"), "");
});

test("sse: subscribe and unsubscribe while open reopen the stream once per tick, settling on the new open", async () => {
  let calls = 0;
  const t = setupSse({ token: () => "tok" + ++calls });
  const got = [];
  t.c.subscribe("a", (m, e) => got.push([m, e])).catch(() => {});
  await settle();
  const first = t.lastES();
  // Subscribing again while the stream connects: it has the event already.
  const early = watch(t.c.subscribe("a", (m, e) => got.push([m, e])));
  await settle();
  assert.equal(early.v, "pending", "settles when the stream opens");
  assert.equal(t.streams.length, 1);
  first.open();
  await settle();
  assert.equal(early.v, "ok");

  const b = watch(t.c.subscribe("b", (m, e) => got.push([m, e])));
  const c2 = watch(t.c.subscribe("c", (m, e) => got.push([m, e])));
  const u = watch(t.c.unsubscribe("a"));
  assert.equal(t.streams.length, 1, "not before the end of the tick");
  await settle();
  assert.equal(t.streams.length, 2, "one reopen for three calls");
  assert.equal(calls, 2, "and one token");
  assert.ok(first.closed, "the old stream is closed");
  assert.deepEqual(t.lastES().events, ["b", "c"]);
  assert.equal(b.v, "pending");
  assert.equal(u.v, "pending");
  first.push("a", "late, from the old stream"); // ignored
  t.lastES().open();
  await settle();
  assert.equal(b.v, "ok");
  assert.equal(c2.v, "ok");
  assert.equal(u.v, "ok");
  assert.equal(t.c.state, "open");
  assert.deepEqual(t.states, [["open", undefined]], "open all along");
  t.lastES().push("c", 1);
  t.lastES().push("a", "not subscribed");
  assert.deepEqual(got, [[1, "c"]]);

  // Subscribing again to an event of the stream replaces the handler and
  // resolves without a new stream; unsubscribing an unknown event too.
  const again = watch(t.c.subscribe("b", (m) => got.push(["new handler", m])));
  const none = watch(t.c.unsubscribe("zzz"));
  await settle();
  assert.equal(again.v, "ok");
  assert.equal(none.v, "ok");
  assert.equal(t.streams.length, 2);
  t.lastES().push("b", "x");
  assert.deepEqual(got.at(-1), ["new handler", "x"]);

  // Subscribe and unsubscribe of the same new event in one tick: no reopen.
  t.c.subscribe("d", () => {}).catch(() => {});
  await t.c.unsubscribe("d");
  await settle();
  assert.equal(t.streams.length, 2);
});

test("sse: a stream that fails before opening rejects the waiting promises, is closed, and retries with the WebSocket backoff", async () => {
  const t = setupSse();
  const a = watch(t.c.subscribe("a", () => {}));
  await settle();
  const es = t.lastES();
  es.error(); // e.g. HTTP 401, 404 or 503: EventSource shows no status
  await settle();
  assert.equal(a.v.code, 1006);
  assert.ok(es.closed, "closed, so it does not reconnect by itself");
  assert.deepEqual(t.states, [["reconnecting", { code: 1006, reason: "connection failed", delay: 1000 }]]);
  await t.clock.advance(999);
  assert.equal(t.streams.length, 1);
  await t.clock.advance(1);
  assert.equal(t.streams.length, 2);
  assert.deepEqual(t.lastES().events, ["a"], "still subscribed");
  // Two more failures: the third in a row slows down, and says so, as on WebSocket.
  const delays = [];
  for (let i = 0; i < 2; i++) {
    t.lastES().error();
    delays.push(t.clock.pending()[0].ms);
    await t.clock.advance(delays[i]);
  }
  assert.deepEqual(delays, [4000, 30000]);
  assert.equal(t.states.at(-1)[1].reason, "no connection after 3 attempts (origin not allowed? wrong URL? server down?); retrying every 15-30 s");
  t.lastES().open();
  assert.equal(t.c.state, "open");

  // A subscribe made during the backoff waits for the next attempt.
  t.lastES().error(); // after open: +1
  const b = watch(t.c.subscribe("b", () => {}));
  await settle();
  assert.equal(t.streams.length, 4, "no stream before the timer");
  assert.equal(b.v, "pending");
  await t.clock.advance(t.clock.pending()[0].ms);
  assert.deepEqual(t.lastES().events, ["a", "b"]);

  // A reopen that fails rejects its subscribe and unsubscribe alike.
  t.lastES().open();
  await settle();
  assert.equal(b.v, "ok");
  const c2 = watch(t.c.subscribe("c", () => {}));
  const u = watch(t.c.unsubscribe("a"));
  await settle();
  t.lastES().error();
  await settle();
  assert.equal(c2.v.code, 1006);
  assert.equal(u.v.code, 1006);
  await t.clock.advance(t.clock.pending()[0].ms);
  assert.deepEqual(t.lastES().events, ["b", "c"], "the unsubscribe still took effect");
});

test("sse: a stream lost after opening is closed and reconnects, registering every event again", async () => {
  let n = 0;
  const t = setupSse({ token: () => "t" + ++n });
  const got = [];
  t.c.subscribe("a", (m) => got.push(m)).catch(() => {});
  await settle();
  t.lastES().open();
  const es = t.lastES();
  es.error();
  assert.ok(es.closed);
  assert.deepEqual(t.states.at(-1), ["reconnecting", { code: 1006, reason: "connection failed", delay: 500 }]);
  await t.clock.advance(500);
  assert.equal(new URL(t.lastES().url).searchParams.get("token"), "t2");
  t.lastES().open();
  t.lastES().push("a", "back");
  es.push("a", "from the dead stream");
  es.error();
  assert.deepEqual(got, ["back"]);
  assert.equal(t.c.state, "open");
  assert.deepEqual(t.clock.pending(), []);
});

test("sse: pushes keep their type; gap, other events and non-JSON data are not pushes; envelope: false hands on text", async () => {
  const t = setupSse();
  const got = [];
  t.c.subscribe("a", (m, e) => got.push([m, e])).catch(() => {});
  t.c.subscribe("close", (m, e) => got.push([m, e])).catch(() => {});
  await settle();
  const es = t.lastES();
  es.open();
  es.push("a", "42");
  es.push("a", 42);
  es.push("a", { n: [1, "2"] });
  es.push("a", true);
  es.push("a", "line 1\nline 2");
  es.emit("a", "not json");
  es.emit("gap", { event: "a", recovered: false });
  es.emit("a", { event: "a", recovered: false }); // no message: not a push
  es.push("close", "an event named close"); // a push, not the end of the stream
  assert.deepEqual(got, [
    ["42", "a"],
    [42, "a"],
    [{ n: [1, "2"] }, "a"],
    [true, "a"],
    ["line 1\nline 2", "a"],
    ["an event named close", "close"],
  ]);
  assert.equal(t.c.state, "open");

  // envelope: false: every handler gets each push as its text, event null
  // (the same as over a WebSocket without envelope), though SSE asks for it.
  const r = setupSse({ envelope: false });
  const raw = [];
  r.c.subscribe("a", (m, e) => raw.push(["A", m, e])).catch(() => {});
  r.c.subscribe("b", (m, e) => raw.push(["B", m, e])).catch(() => {});
  await settle();
  assert.match(r.lastES().url, /[?&]envelope=1&/);
  r.lastES().open();
  r.lastES().push("a", "text");
  r.lastES().push("b", { n: 1 });
  assert.deepEqual(raw, [
    ["A", "text", null],
    ["B", "text", null],
    ["A", '{"n":1}', null],
    ["B", '{"n":1}', null],
  ]);
});

test("sse: event close 4000, 1001 and 4008 reconnect with backoff; 4001 ends the client for good", async () => {
  for (const code of [4000, 1001, 4008]) {
    const t = setupSse();
    t.c.subscribe("a", () => {}).catch(() => {});
    await settle();
    t.lastES().open();
    const es = t.lastES();
    es.serverClose(code, "why");
    assert.ok(es.closed);
    assert.deepEqual(t.states.at(-1), ["reconnecting", { code, reason: "why", delay: 500 }], String(code));
    assert.equal(t.clock.pending().length, 1, "one retry, not one per error");
    await t.clock.advance(500);
    assert.equal(t.streams.length, 2);
    t.lastES().open();
    assert.equal(t.c.state, "open");
  }

  const seen = [];
  const t = setupSse({ onclose: (e) => seen.push(e) });
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  t.lastES().open();
  const pending = watch(t.c.subscribe("b", () => {}));
  t.lastES().serverClose(4001, "dropped for good");
  await settle();
  assert.equal(t.c.state, "closed");
  assert.deepEqual(t.states.at(-1), ["closed", { code: 4001, reason: "dropped for good" }]);
  assert.deepEqual(seen, [{ code: 4001, reason: "dropped for good" }]);
  assert.equal(pending.v.code, 4001);
  await t.clock.advance(120000);
  assert.equal(t.streams.length, 1, "never reopens");
});

test("sse: event close 4401/4403: onAuthError and closed; a token function is asked once more at once", async () => {
  for (const code of [4401, 4403]) {
    const errs = [];
    const t = setupSse({ onAuthError: (e) => errs.push(e) });
    t.c.subscribe("a", () => {}).catch(() => {});
    await settle();
    t.lastES().open();
    t.lastES().serverClose(code, "token expired");
    assert.deepEqual(errs, [{ code, reason: "token expired" }]);
    assert.equal(t.c.state, "closed");
    await t.clock.advance(120000);
    assert.equal(t.streams.length, 1);
  }

  const errs = [];
  let calls = 0;
  const t = setupSse({ token: () => "t" + ++calls, onAuthError: (e) => errs.push(e) });
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  t.lastES().open();
  t.lastES().serverClose(4401, "token expired");
  await settle();
  assert.deepEqual(t.states.at(-1), ["reconnecting", { code: 4401, reason: "token expired", delay: 0 }]);
  assert.equal(t.streams.length, 2, "fresh token asked at once, no backoff");
  assert.equal(new URL(t.lastES().url).searchParams.get("token"), "t2");
  t.lastES().serverClose(4401, "still bad");
  await settle();
  assert.deepEqual(errs, [{ code: 4401, reason: "still bad" }]);
  assert.equal(t.c.state, "closed");

  // The allowance comes back once a stream opens (the token was accepted).
  let k = 0;
  const u = setupSse({ token: () => "u" + ++k, onAuthError: (e) => errs.push(e) });
  u.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  for (let round = 0; round < 3; round++) {
    u.lastES().open();
    u.lastES().serverClose(4401, "expired later");
    await settle();
    assert.equal(u.c.state, "reconnecting");
  }
  assert.equal(errs.length, 1);
  assert.equal(k, 4);
});

test("sse: unsubscribing the last event closes the stream and waits for subscribe()", async () => {
  const t = setupSse();
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  const es = t.lastES();
  es.open();
  const u = watch(t.c.unsubscribe("a"));
  await settle();
  assert.equal(u.v, "ok");
  assert.ok(es.closed);
  assert.equal(t.c.state, "reconnecting");
  assert.deepEqual(t.states.at(-1), ["reconnecting", { code: 1000, reason: "nothing subscribed" }]);
  assert.deepEqual(t.clock.pending(), []);
  await t.clock.advance(60000);
  assert.equal(t.streams.length, 1);
  const b = watch(t.c.subscribe("b", () => {}));
  await settle();
  assert.equal(t.streams.length, 2);
  assert.deepEqual(t.lastES().events, ["b"]);
  t.lastES().open();
  await settle();
  assert.equal(b.v, "ok");
  assert.equal(t.c.state, "open");

  // Unsubscribed while the first stream connects: it is closed, quietly.
  const v = setupSse();
  const a = watch(v.c.subscribe("a", () => {}));
  await settle();
  const w = watch(v.c.unsubscribe("a"));
  await settle();
  assert.equal(w.v, "ok");
  assert.equal(a.v.code, 0);
  assert.ok(v.lastES().closed);
  assert.equal(v.c.state, "connecting");
  assert.deepEqual(v.states, []);
});

test("sse: close() closes the stream, rejects pending promises and cancels a due reopen", async () => {
  const t = setupSse();
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  t.lastES().open();
  const b = watch(t.c.subscribe("b", () => {}));
  t.c.close();
  await settle();
  assert.equal(b.v.code, 1000);
  assert.ok(t.lastES().closed);
  assert.equal(t.streams.length, 1, "the reopen due for b is cancelled");
  assert.equal(t.c.state, "closed");
  t.lastES().push("a", "late");
  t.lastES().error();
  assert.deepEqual(t.clock.pending(), []);
});

test("auto: after 3 WebSocket opens fail in a row the client switches to SSE, and stays there", async () => {
  const t = setup({}, "wss://h/ws", true);
  const got = [];
  const a = watch(t.c.subscribe("a", (m, e) => got.push([m, e])));
  await settle();
  assert.equal(t.c.transport, "websocket");
  // An open in between starts the count again.
  t.last().error();
  await t.clock.advance(t.clock.pending()[0].ms);
  t.last().open();
  t.last().serverClose(1006);
  await t.clock.advance(t.clock.pending()[0].ms);
  for (let i = 0; i < 2; i++) {
    t.last().error();
    await t.clock.advance(t.clock.pending()[0].ms);
  }
  assert.equal(t.streams.length, 0, "two failures in a row since the open");
  t.last().error();
  assert.equal(t.c.transport, "sse");
  assert.equal(t.c.state, "reconnecting");
  assert.deepEqual(t.states.at(-1), [
    "reconnecting",
    { code: 1006, reason: "no WebSocket connection after 3 attempts; trying Server-Sent Events", delay: 1000 },
  ]);
  assert.equal(t.sockets.length, 5);
  await t.clock.advance(1000);
  assert.equal(t.sockets.length, 5, "no more WebSockets");
  assert.equal(t.streams.length, 1);
  assert.equal(t.lastES().url, "https://h/sse?envelope=1&token=tok&event=a");
  t.lastES().open();
  await settle();
  assert.equal(t.c.state, "open");
  t.lastES().push("a", { via: "sse" });
  assert.deepEqual(got, [[{ via: "sse" }, "a"]]);
  assert.ok(a.v instanceof Error, "the subscribe pending on the first socket rejected, as on WebSocket");

  // Stays on SSE after a stream drop; 3 failed streams slow down as usual.
  t.lastES().serverClose(4000);
  for (let i = 0; i < 3; i++) {
    await t.clock.advance(t.clock.pending()[0].ms);
    t.lastES().error();
  }
  assert.equal(t.sockets.length, 5);
  assert.equal(t.streams.length, 4);
  assert.equal(t.states.at(-1)[1].reason, "no connection after 3 attempts (origin not allowed? wrong URL? server down?); retrying every 15-30 s");
  assert.ok(t.clock.pending()[0].ms >= 15000);
});

test('transport "websocket" never switches; "auto" without EventSource keeps to WebSocket', async () => {
  for (const [opts, withES] of [
    [{ transport: "websocket" }, true],
    [{}, false],
  ]) {
    const t = setup(opts, "ws://h/ws", withES);
    t.c.subscribe("a", () => {}).catch(() => {});
    await settle();
    for (let i = 0; i < 6; i++) {
      t.last().error();
      await t.clock.advance(t.clock.pending()[0].ms);
    }
    assert.equal(t.sockets.length, 7);
    assert.equal(t.streams.length, 0);
    assert.equal(t.c.transport, "websocket");
  }
});

// --- token refresh (SPEC §9) ----------------------------------------------

// An unsigned JWT with these claims (the client never verifies).
const jwt = (claims) => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.c2ln`;
};

// A token function minting JWTs that live `life` seconds from the fake
// clock's now; `tokens` lists what it handed out.
function minter(clock, life, claims = {}) {
  const tokens = [];
  const fn = () => {
    const iat = Math.floor(clock.now() / 1000);
    const t = jwt({ sub: "u", iat, exp: iat + life, n: tokens.length, ...claims });
    tokens.push(t);
    return t;
  };
  return { fn, tokens };
}

// A WebSocket client subscribed to "e" with a token function of tokens
// living `life` s; open and registered.
async function refreshing(life) {
  const clock = fakeClock();
  const m = minter(clock, life);
  const t = setup({ token: m.fn, _setTimeout: clock.setTimeout, _clearTimeout: clock.clearTimeout, _now: clock.now });
  t.clock = clock;
  t.m = m;
  watch(t.c.subscribe("e", () => {}));
  await settle();
  t.last().open();
  t.last().replyAll();
  await settle();
  return t;
}

test("refresh timing: 80 % of the life, or 30 s before exp if sooner, never before half of it", async () => {
  for (const [life, at] of [
    [3600, 2880], // 80 %
    [100, 70], // 30 s before exp
    [3, 1.5], // half
    [50, 25], // 30 s before exp would be at 20 s: half
  ]) {
    const { clock, last, m } = await refreshing(life);
    await clock.advance(at * 1000 - 1);
    assert.equal(last().sent.length, 0, `${life} s: not before ${at} s`);
    await clock.advance(1);
    assert.deepEqual(last().sent, [{ type: "refresh", token: m.tokens[1], id: 2 }], `${life} s: at ${at} s`);
  }
});

test("a WebSocket refreshes again and again on the same socket; later subscribes use the new token", async () => {
  // A 4 s life refreshes at half of it, 2 s after each iat (whole seconds).
  const { c, clock, last, sockets, states, m } = await refreshing(4);
  for (let i = 1; i <= 3; i++) {
    await clock.advance(2000);
    const cmd = last().sent.pop();
    assert.deepEqual(cmd, { type: "refresh", token: m.tokens[i], id: i + 1 }, `refresh ${i}`);
    last().reply(cmd);
    await settle();
  }
  assert.equal(sockets.length, 1, "one socket throughout");
  assert.equal(c.state, "open");
  assert.deepEqual(states, [["open", undefined]]);
  watch(c.subscribe("f", () => {}));
  assert.deepEqual(last().sent, [{ token: m.tokens[3], event: "f", id: 5 }]);
});

test("a refused refresh is an auth failure: the token function is asked once more, on a new socket", async () => {
  const { c, clock, last, sockets, m } = await refreshing(100);
  await clock.advance(70000);
  last().reply(last().sent.pop(), false, 4401, "token revoked");
  await settle();
  assert.equal(sockets.length, 2, "a new attempt at once");
  assert.equal(m.tokens.length, 3);
  last().open();
  assert.deepEqual(last().sent, [{ token: m.tokens[2], event: "e", id: 3 }]);
  assert.equal(c.state, "open");
});

test("no refresh for a string token, a token without exp, or one that is no JWT", async () => {
  for (const token of [jwt({ sub: "u", exp: 100 }), () => jwt({ sub: "u" }), () => "not-a-jwt", () => "a.!!.b"]) {
    const clock = fakeClock();
    const { c, last } = setup({ token, _setTimeout: clock.setTimeout, _clearTimeout: clock.clearTimeout, _now: clock.now });
    watch(c.subscribe("e", () => {}));
    await settle();
    last().open();
    last().replyAll();
    await settle();
    assert.deepEqual(clock.pending(), [], String(token));
  }
});

test("without iat the life counts from when the token came; closing cancels the refresh", async () => {
  const clock = fakeClock();
  await clock.advance(1000000); // the clock is not at 0
  let calls = 0;
  const token = () => (calls++, jwt({ sub: "u", exp: Math.floor(clock.now() / 1000) + 100 }));
  const { c, last } = setup({ token, _setTimeout: clock.setTimeout, _clearTimeout: clock.clearTimeout, _now: clock.now });
  watch(c.subscribe("e", () => {}));
  await settle();
  last().open();
  assert.deepEqual(clock.pending().map((x) => x.ms), [70000]);
  c.close();
  assert.deepEqual(clock.pending(), []);
  await clock.advance(200000);
  assert.equal(calls, 1, "not asked again after close()");
});

test("sse: a refresh opens a new stream with the new token", async () => {
  const clock = fakeClock();
  const m = minter(clock, 3);
  const { c, lastES, streams } = setupSse({ token: m.fn, _setTimeout: clock.setTimeout, _clearTimeout: clock.clearTimeout, _now: clock.now });
  const got = [];
  watch(c.subscribe("e", (msg) => got.push(msg)));
  await settle();
  lastES().open();
  for (let i = 1; i <= 3; i++) {
    await clock.advance(1500);
    assert.equal(streams.length, i + 1, `stream ${i + 1}`);
    assert.ok(streams[i - 1].closed, "the old stream is closed");
    assert.equal(new URL(lastES().url).searchParams.get("token"), m.tokens[i]);
    lastES().open();
    lastES().push("e", `m${i}`);
  }
  assert.deepEqual(got, ["m1", "m2", "m3"]);
  assert.equal(c.state, "open");
});

// --- resume (server --history, SPEC §8) -------------------------------------

test("resume: a re-register sends each event's last cursor as since; recovered false calls onGap", async () => {
  const gaps = [];
  const t = setup({ onGap: (e) => gaps.push(["option", e]) });
  const got = [];
  t.c.subscribe("a", (m) => got.push(m)).catch(() => {});
  t.c.subscribe("b", (m) => got.push(m)).catch(() => {});
  t.c.subscribe("c", (m) => got.push(m)).catch(() => {});
  await settle();
  t.last().open();
  assert.deepEqual(t.last().sent.map((x) => x.since), [undefined, undefined, undefined], "nothing seen yet");
  t.last().replyAll();
  t.last().recv({ event: "a", message: "1", cursor: "e-1" });
  t.last().recv({ event: "b", message: "2", cursor: "e-2" });
  t.last().recv({ event: "a", message: "3", cursor: "e-3" });
  t.last().recv({ event: "a", message: "no cursor" }); // a server without history
  t.last().serverClose(4000, "dropped");
  await t.clock.advance(500);
  t.last().open();
  const sent = t.last().sent.splice(0);
  assert.deepEqual(
    sent.map((x) => [x.event, x.since]),
    [
      ["a", "e-3"],
      ["b", "e-2"],
      ["c", undefined],
    ],
  );
  t.c.onGap = (e) => gaps.push(["property", e]); // set on the client
  t.last().recv({ id: sent[0].id, ok: true, recovered: true });
  t.last().recv({ id: sent[1].id, ok: true, recovered: false });
  t.last().recv({ id: sent[2].id, ok: true });
  assert.deepEqual(gaps, [["property", "b"]]);
  // The replay arrives as pushes, its cursors kept for the next time.
  t.last().recv({ event: "a", message: "4", cursor: "e-4" });
  assert.deepEqual(got, ["1", "2", "3", "no cursor", "4"]);
  t.last().serverClose(1006);
  await t.clock.advance(1000);
  t.last().open();
  assert.equal(t.last().sent[0].since, "e-4");
});

test("resume, sse: the reopened stream carries since= the last cursor; a gap event calls onGap", async () => {
  const gaps = [];
  const t = setupSse({ onGap: (e) => gaps.push(e) });
  const got = [];
  t.c.subscribe("a", (m) => got.push(m)).catch(() => {});
  t.c.subscribe("gap", (m) => got.push(m)).catch(() => {});
  await settle();
  assert.equal(new URL(t.lastES().url).searchParams.get("since"), null);
  t.lastES().open();
  t.lastES().emit("a", { event: "a", message: "1", cursor: "e-7" });
  t.lastES().push("gap", "a push on an event named gap");
  t.lastES().error();
  await t.clock.advance(500);
  assert.equal(new URL(t.lastES().url).searchParams.get("since"), "e-7");
  t.lastES().open();
  t.lastES().emit("gap", { event: "a", recovered: false });
  assert.deepEqual(gaps, ["a"]);
  assert.deepEqual(got, ["1", "a push on an event named gap"]);
  // A subscribe reopens the stream from the last cursor too.
  t.c.subscribe("b", () => {}).catch(() => {});
  await settle();
  assert.deepEqual(t.lastES().events, ["a", "gap", "b"]);
  assert.equal(new URL(t.lastES().url).searchParams.get("since"), "e-7");
});

// --- fixes from an audit against SPEC §6-§9 --------------------------------

test('a 4403 "event not allowed" reply refuses that event only: no auth failure, no new token, no reconnect', async () => {
  let asked = 0;
  const errors = [];
  const t = setup({ token: () => (asked++, "tok"), onAuthError: (e) => errors.push(e) });
  await settle();
  t.last().open();
  const got = [];
  const ok = watch(t.c.subscribe("chat:1", (m) => got.push(m)));
  const no = watch(t.c.subscribe("admin", (m) => got.push(m)));
  const [ra, rb] = t.last().sent.splice(0);
  t.last().reply(ra);
  t.last().reply(rb, false, 4403, "event not allowed");
  await settle();
  assert.equal(ok.v, "ok");
  assert.equal(no.v.code, 4403);
  assert.equal(no.v.message, "event not allowed");
  assert.equal(t.c.state, "open");
  assert.deepEqual(errors, []);
  assert.equal(asked, 1, "the token function is not asked again");
  assert.equal(t.sockets.length, 1, "the socket stays");
  assert.equal(t.last().closedWith, null);
  t.last().recv({ event: "chat:1", message: "still here" });
  assert.deepEqual(got, ["still here"]);
  // Another user's token is still an auth failure.
  const other = watch(t.c.subscribe("x", () => {}));
  t.last().reply(t.last().sent.pop(), false, 4403, "token belongs to another user");
  await settle();
  assert.equal(other.v.code, 4403);
  assert.equal(asked, 2, "a fresh token, once");
});

test("refresh timing counts from iat: a token handed out late is refreshed on time, or at once when past due", async () => {
  const clock = fakeClock();
  await clock.advance(1_000_000_000); // 1e6 s
  const n = 1_000_000;
  const tokens = [
    jwt({ sub: "u", iat: n - 200, exp: n + 100 }), // 300 s life, due at iat + 240 s: in 40 s
    jwt({ sub: "u", iat: n - 290, exp: n + 10 }), // due 20 s ago: at once
    jwt({ sub: "u", iat: n, exp: n + 60 * 86400 }), // 60 days: beyond a timer's range
  ];
  for (const [token, ms] of [
    [tokens[0], 40000],
    [tokens[1], 0],
    [tokens[2], 2e9],
  ]) {
    const { c, last } = setup({ token: () => token, _setTimeout: clock.setTimeout, _clearTimeout: clock.clearTimeout, _now: clock.now });
    watch(c.subscribe("e", () => {}));
    await settle();
    last().open();
    assert.deepEqual(clock.pending().map((x) => x.ms), [ms], token);
    c.close();
  }
});

test("subscribing again on the open socket sends no since: nothing can be missing, and no false gap", async () => {
  const gaps = [];
  const t = setup({ onGap: (e) => gaps.push(e) });
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  t.last().open();
  t.last().replyAll();
  t.last().recv({ event: "a", message: "1", cursor: "e-1" });
  watch(t.c.subscribe("a", () => {}));
  assert.deepEqual(t.last().sent.map((x) => [x.event, x.since]), [["a", undefined]]);
  // After a reconnect the cursor is sent, as before.
  t.last().serverClose(4000);
  await t.clock.advance(500);
  t.last().open();
  assert.deepEqual(t.last().sent.map((x) => [x.event, x.since]), [["a", "e-1"]]);
  assert.deepEqual(gaps, []);
});

test("auto: a token function that fails is no failed WebSocket open: it never switches to SSE", async () => {
  const t = setup({ token: () => Promise.reject(new Error("token service down")) }, "wss://h/ws", true);
  t.c.subscribe("a", () => {}).catch(() => {});
  await settle();
  for (let i = 0; i < 5; i++) await t.clock.advance(t.clock.pending()[0].ms);
  assert.equal(t.sockets.length, 0);
  assert.equal(t.streams.length, 0);
  assert.equal(t.c.transport, "websocket");
});

test('sse: a push on an event named "error" or "open" is a push, not the stream failing or opening', async () => {
  const t = setupSse();
  const got = [];
  t.c.subscribe("error", (m, e) => got.push([m, e])).catch(() => {});
  t.c.subscribe("open", (m, e) => got.push([m, e])).catch(() => {});
  await settle();
  t.lastES().open();
  await settle();
  // A browser hands a named event to onerror/onopen too: it is a MessageEvent, with data.
  for (const name of ["error", "open"]) {
    const data = JSON.stringify({ event: name, message: "m-" + name });
    t.lastES().emit(name, data);
    t.lastES()["on" + name]({ type: name, data });
  }
  assert.deepEqual(got, [
    ["m-error", "error"],
    ["m-open", "open"],
  ]);
  assert.equal(t.c.state, "open");
  assert.equal(t.streams.length, 1);
  assert.equal(t.lastES().closed, false);
});

test("a token function failing at refresh time keeps the connection: no unhandled rejection", async () => {
  const clock = fakeClock();
  const m = minter(clock, 100);
  let fail = false;
  const token = () => (fail ? Promise.reject(new Error("down")) : m.fn());
  const unhandled = [];
  const onUnhandled = (e) => unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
  try {
    const t = setup({ token, _setTimeout: clock.setTimeout, _clearTimeout: clock.clearTimeout, _now: clock.now });
    watch(t.c.subscribe("e", () => {}));
    await settle();
    t.last().open();
    t.last().replyAll();
    fail = true;
    await clock.advance(70000);
    await settle();
    assert.deepEqual(t.last().sent, [], "no refresh sent");
    assert.equal(t.c.state, "open");
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
