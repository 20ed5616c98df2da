/* wspush browser client. No dependencies. Served by wspush at /wspush.js.
 *
 * Script or module: a file that contains `export` does not load as a classic
 * <script>, and one without it exports nothing to `import`, so no single file
 * can be both. This file is the whole client, written so that it runs
 * unchanged as a classic script, as an ES module body and as CommonJS:
 *   <script src="/wspush.js"></script>           -> global `wspush`
 *   import { connect } from "/wspush.mjs";       -> wspush.mjs is a two-line
 *                                                   re-export of this file
 *   const { connect } = require("./wspush.js");  -> CommonJS (Node, bundlers)
 * In every case it also sets globalThis.wspush.
 *
 *   var c = wspush.connect("wss://example.com/ws", { token: "aaa" });
 *   c.subscribe("news", function (message, event) { ... }).catch(...);
 *
 * Envelope mode is on unless `envelope: false`: the client adds envelope=1 to
 * the URL and hands each push to the handler of its event. With it off the
 * server sends bare message text, which names no event, so every handler
 * gets every push as raw text, with `event` null.
 *
 * Subscribe/unsubscribe promises settle on the server's {"id"} reply. If the
 * connection drops first, a pending subscribe rejects (the subscription is
 * kept and registered again after the reconnect) and a pending unsubscribe
 * resolves (the event is not registered again). A subscribe refused for
 * another reason than auth rejects and is forgotten.
 *
 * Reconnect delay: random(0, min(30 s, 0.5 s * 2^(n-1))); each failure adds 1
 * to n, 2 after close 1013 or a connection that closed before it opened (how
 * an HTTP 503 shows); n is reset when a connection had stayed open 10 s.
 * A browser shows every refused handshake (403 origin not allowed, 404,
 * 503) and an unreachable server alike, as 1006 before open, so after 3
 * such failures in a row the delay is random(15 s, 30 s) until an attempt
 * opens, and onstatechange is called once more with "reconnecting" and a
 * reason that says so; the page can show it instead of spinning quietly.
 * With nothing subscribed the client does not reconnect until subscribe().
 * Close 4401/4403, or a register reply with that code: onAuthError({code,
 * reason}) and "closed"; a `token` function is first asked once for a fresh
 * token (that allowance comes back after a register succeeds).
 * Close 4001 (the server's /drop with "reconnect": false): "closed" for good
 * and onclose({code, reason}); close 4000 (a plain /drop) reconnects.
 * Options starting with _ (_WebSocket, _setTimeout, _clearTimeout, _random,
 * _now) are for tests.
 */
(function (G) {
  "use strict";

  function envelopeUrl(url) {
    if (/[?&]envelope=1(&|#|$)/.test(url)) return url;
    var h = url.indexOf("#"),
      frag = h < 0 ? "" : url.slice(h);
    url = h < 0 ? url : url.slice(0, h);
    return url + (url.indexOf("?") < 0 ? "?" : /[?&]$/.test(url) ? "" : "&") + "envelope=1" + frag;
  }

  function failure(code, reason) {
    var e = new Error(reason || "wspush error " + code);
    e.code = code;
    return e;
  }

  function connect(url, o) {
    o = o || {};
    var WS = o._WebSocket || G.WebSocket,
      setT = o._setTimeout || setTimeout,
      clearT = o._clearTimeout || clearTimeout,
      random = o._random || Math.random,
      now = o._now || Date.now,
      env = o.envelope !== false,
      wsUrl = env ? envelopeUrl(url) : url,
      subs = new Map(), // event -> { h: handler, w: [[resolve, reject]] not yet sent }
      pend = new Map(), // id -> { e: event, w: waiters, u: is unregister }
      st = "connecting",
      ws = null, // the current socket, once created
      live = false, // ws is open
      gen = 0, // attempt number; stale callbacks compare against it
      timer = null,
      parked = false, // waiting for a subscribe() to reconnect
      token,
      lastId = 0,
      fails = 0,
      early = 0, // attempts in a row that failed before opening
      openedAt = 0,
      retried = false;
    if (!WS) throw new Error("wspush: no WebSocket in this environment");

    var c = {
      get state() {
        return st;
      },
      onstatechange: o.onstatechange || null,
      onAuthError: o.onAuthError || null,
      onclose: o.onclose || null,
      subscribe: function (event, handler) {
        return new Promise(function (resolve, reject) {
          if (st == "closed") return reject(failure(1000, "client closed"));
          var s = subs.get(event);
          if (s) s.h = handler;
          else subs.set(event, (s = { h: handler, w: [] }));
          s.w.push([resolve, reject]);
          if (live) register(s, event);
          else if (parked) start();
        });
      },
      unsubscribe: function (event) {
        return new Promise(function (resolve, reject) {
          var s = subs.get(event);
          subs.delete(event);
          if (s) settle(s.w, failure(0, "unsubscribed"));
          if (live) send({ type: "unregister", event: event }, event, [[resolve, reject]], true);
          else resolve();
        });
      },
      close: function () {
        if (st != "closed") stop(failure(1000, "client closed"));
      },
    };

    function set(s, info, again) {
      if (s == st && !again) return;
      st = s;
      if (c.onstatechange) c.onstatechange(s, info);
    }

    function settle(waiters, err) {
      waiters.forEach(function (w) {
        err ? w[1](err) : w[0]();
      });
    }

    function send(cmd, event, waiters, unreg) {
      cmd.id = ++lastId;
      pend.set(cmd.id, { e: event, w: waiters, u: unreg });
      ws.send(JSON.stringify(cmd));
    }

    function register(s, event) {
      var w = s.w;
      s.w = [];
      send({ token: token, event: event }, event, w, false);
    }

    // One connection attempt: ask for the token, then open the socket.
    function start() {
      var g = ++gen,
        t = o.token;
      timer = null;
      parked = false;
      new Promise(function (r) {
        r(typeof t == "function" ? t() : t);
      })
        .then(function (v) {
          if (g != gen) return;
          token = v;
          var s = (ws = new WS(wsUrl));
          s.onopen = function () {
            if (s != ws) return;
            live = true;
            early = 0;
            openedAt = now();
            subs.forEach(register);
            set("open");
          };
          s.onmessage = function (e) {
            if (s == ws) message(e.data);
          };
          s.onclose = function (e) {
            if (s == ws) closed(e.code, e.reason);
          };
          // An error always means close 1006; don't wait for the close event
          // (Node's WebSocket may only send it when the server hangs up).
          s.onerror = function () {
            if (s != ws) return;
            closed(1006, "connection failed");
            try {
              s.close();
            } catch (x) {}
          };
        })
        .catch(function (e) {
          if (g == gen) closed(0, String((e && e.message) || e));
        });
    }

    // Throw the current socket away (closing it ourselves) and settle
    // everything that was waiting on it.
    function drop(err) {
      gen++;
      clearT(timer);
      timer = null;
      if (ws)
        try {
          ws.close(1000);
        } catch (x) {}
      ws = null;
      flush(err);
    }

    function flush(err) {
      live = false;
      pend.forEach(function (p) {
        settle(p.w, p.u ? 0 : err);
      });
      pend.clear();
      subs.forEach(function (s) {
        settle(s.w, err);
        s.w = [];
      });
    }

    function stop(err) {
      drop(err);
      set("closed", err.code ? { code: err.code, reason: err.message } : undefined);
    }

    function authFailed(code, reason) {
      if (typeof o.token == "function" && !retried) {
        retried = true;
        drop(failure(code, reason));
        set("reconnecting", { code: code, reason: reason, delay: 0 });
        start();
      } else {
        stop(failure(code, reason));
        if (c.onAuthError) c.onAuthError({ code: code, reason: reason });
      }
    }

    // The socket closed by itself (server, network), or the attempt failed.
    function closed(code, reason) {
      var wasOpen = live;
      ws = null;
      flush(failure(code, reason || "connection closed"));
      if (code == 4401 || code == 4403) return authFailed(code, reason);
      if (code == 4001) {
        stop(failure(code, reason));
        if (c.onclose) c.onclose({ code: code, reason: reason });
        return;
      }
      if (wasOpen && now() - openedAt >= 10000) fails = 0;
      fails += code == 1013 || !wasOpen ? 2 : 1;
      var info = { code: code, reason: reason },
        slow = !wasOpen && ++early >= 3,
        tell = slow && early == 3 && subs.size > 0;
      if (tell) info.reason = "no connection after 3 attempts (origin not allowed? wrong URL? server down?); retrying every 15-30 s";
      if (!subs.size) parked = true;
      else timer = setT(start, (info.delay = slow ? 15000 * (1 + random()) : random() * Math.min(30000, 500 * Math.pow(2, fails - 1))));
      set("reconnecting", info, tell);
    }

    function message(data) {
      var m;
      if (env || data.slice(0, 6) == '{"id":')
        try {
          m = JSON.parse(data);
        } catch (x) {}
      var p = m && pend.get(m.id);
      if (p && typeof m.ok == "boolean") {
        pend.delete(m.id);
        if (m.ok) {
          if (!p.u) retried = false;
          return settle(p.w);
        }
        var err = failure(m.code, m.error);
        settle(p.w, err);
        if (p.u) return;
        if (m.code == 4401 || m.code == 4403) return authFailed(m.code, m.error);
        var s = subs.get(p.e);
        if (s) {
          subs.delete(p.e);
          settle(s.w, err);
        }
      } else if (!env) {
        subs.forEach(function (s) {
          s.h(data, null);
        });
      } else if (m && typeof m.event == "string" && subs.has(m.event)) {
        subs.get(m.event).h(m.message, m.event);
      }
    }

    start();
    return c;
  }

  var api = { connect: connect };
  G.wspush = api;
  if (typeof module == "object" && module && typeof exports == "object") exports.connect = connect;
})(globalThis);
