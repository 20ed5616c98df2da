// Shared setup of the real-server and browser tests (outside web/test/, where
// node --test would run it as a test file).
// Shared by server.test.mjs and browser.test.mjs: builds and runs the real
// server (target/release/wspush, or under $CARGO_TARGET_DIR) and talks to its
// HTTP API. node:test hooks belong to the test file, so each file registers
// its own before()/after() and calls buildServerBinary() / stopServers().
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const BIN = join(process.env.CARGO_TARGET_DIR || join(ROOT, "target"), "release", "wspush");

// Every server startServer() started (in this test file's process).
const servers = [];

// cargo build --release --bin wspush (a no-op when up to date). For before().
export function buildServerBinary() {
  const r = spawnSync("cargo", ["build", "--release", "--bin", "wspush"], { cwd: ROOT, encoding: "utf8" });
  if (r.error || r.status !== 0) throw new Error("cargo build --release failed:\n" + (r.stderr || r.error));
}

// SIGTERMs every server still running and waits for it to exit. For after().
export async function stopServers() {
  for (const p of servers) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill("SIGTERM");
      await new Promise((r) => p.once("exit", r));
    }
  }
}

// Starts a server; resolves to its address once it prints "listening on ADDR".
export function startServer(...args) {
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

// POSTs body as JSON; asserts HTTP 200 and resolves to the JSON answer.
export async function post(addr, path, body) {
  const r = await fetch(`http://${addr}${path}`, {
    method: "POST",
    headers: { accept: "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${path} answered ${r.status}`);
  return r.json();
}

// A waitFor(what, cond, ms = timeout) that polls cond() every interval ms
// until it is truthy, or throws "timed out waiting for <what>" after ms.
// Each test file picks its own timeout and interval.
export function makeWaitFor({ timeout, interval }) {
  return async function waitFor(what, cond, ms = timeout) {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error("timed out waiting for " + what);
      await new Promise((r) => setTimeout(r, interval));
    }
  };
}
