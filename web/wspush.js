/* wspush browser client (no dependencies), served by wspush at /wspush.js:
 * a classic script (global `wspush`), the body of wspush.mjs, or CommonJS.
 *   var c = wspush.connect("wss://example.com/ws", { token: "aaa" });
 *   c.subscribe("news", function (message, event) { ... }).catch(...);
 * How it behaves (transports, reconnect delays, auth errors, token refresh,
 * resume): web/README.md. Options starting with _ are for tests.
 */
(function (G) {
  "use strict";

  function addQuery(url, q) {
    var h = url.indexOf("#"),
      frag = h < 0 ? "" : url.slice(h);
    url = h < 0 ? url : url.slice(0, h);
    return url + (url.indexOf("?") < 0 ? "?" : /[?&]$/.test(url) ? "" : "&") + q + frag;
  }

  function failure(code, reason) {
    var e = new Error(reason || "wspush error " + code);
    e.code = code;
    return e;
  }

  function connect(url, o) {
    o = o || {};
    var WS = o._WebSocket || G.WebSocket,
      ES = o._EventSource || G.EventSource,
      sse = o.transport == "sse",
      auto = o.transport != "websocket",
      setT = o._setTimeout || setTimeout,
      clearT = o._clearTimeout || clearTimeout,
      random = o._random || Math.random,
      now = o._now || Date.now,
      env = o.envelope !== false,
      wsUrl = env && !/[?&]envelope=1(&|#|$)/.test(url) ? addQuery(url, "envelope=1") : url,
      sseUrl = (o.sseUrl || url.replace(/^(?:ws|http)(s?:\/\/[^\/?#]*)[^?#]*/, "http$1/sse"))
        .replace(/#.*/, "")
        .replace(/([?&])envelope=[^&]*&?/g, "$1"),
      subs = new Map(), // event -> { h: handler, w: [[resolve, reject]] not yet sent }
      pend = new Map(), // id -> { e: event, w: waiters, u: is unregister }
      st = "connecting",
      ws = null, // the current WebSocket or EventSource
      live = false, // ws is open
      gen = 0, // attempt number; stale callbacks compare against it
      timer = null,
      rt, // refresh timer
      parked = false, // waiting for a subscribe() to reconnect
      token,
      cur, // query() of the current stream
      due = 0, // a reopen is due
      lastId = 0,
      lc, // the last cursor seen
      fails = 0,
      early = 0, // attempts in a row that failed before opening
      openedAt = 0,
      retried = false;
    if (!(sse ? ES : WS)) throw new Error("wspush: no " + (sse ? "EventSource" : "WebSocket"));

    var c = {
      get state() {
        return st;
      },
      get transport() {
        return sse ? "sse" : "websocket";
      },
      onstatechange: o.onstatechange || null,
      onAuthError: o.onAuthError || null,
      onclose: o.onclose || null,
      onGap: o.onGap || null,
      subscribe: function (event, handler) {
        return new Promise(function (resolve, reject) {
          if (st == "closed") return reject(failure(1000, "client closed"));
          var s = subs.get(event),
            had = s && live;
          if (s) s.h = handler;
          else subs.set(event, (s = { h: handler, w: [] }));
          s.w.push([resolve, reject]);
          if (sse) reopen();
          else if (live) register(s, event, had);
          else if (parked) start();
        });
      },
      unsubscribe: function (event) {
        return new Promise(function (resolve, reject) {
          var s = subs.get(event),
            w = [[resolve, reject]];
          subs.delete(event);
          if (s) settle(s.w, failure(0, "unsubscribed"));
          if (sse && s) {
            reopen();
            if (live) return pend.set(++lastId, { w: w });
          }
          if (live && !sse) send({ type: "unregister", event: event }, event, w, true);
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

    // again: registered on this socket already; nothing to resume.
    function register(s, event, again) {
      var w = s.w;
      s.w = [];
      send({ token: token, event: event, since: again === true ? undefined : s.c }, event, w, false);
    }

    function query() {
      var q = "";
      subs.forEach(function (s, e) {
        q += "&event=" + encodeURIComponent(e);
      });
      return q;
    }

    // SSE: a stream's events are fixed; not while a backoff timer runs.
    function reopen() {
      if (!due++)
        Promise.resolve().then(function () {
          due = 0;
          if (st == "closed" || timer) return;
          if (!ws || cur != query()) start();
          else if (live) flush();
        });
    }

    // One attempt: ask for the token, then open the socket or stream.
    function start() {
      var g = ++gen,
        t = o.token;
      timer = null;
      parked = false;
      if (ws) ws.close(); // SSE: the old stream
      ws = null;
      live = false;
      if (sse && !subs.size) {
        parked = true;
        flush();
        if (st != "connecting") set("reconnecting", { code: 1000, reason: "nothing subscribed" });
        return;
      }
      new Promise(function (r) {
        r(typeof t == "function" ? t() : t);
      })
        .then(function (v) {
          if (g != gen) return;
          sched((token = v));
          var s;
          if (sse) {
            s = ws = new ES(addQuery(sseUrl, "envelope=1&token=" + encodeURIComponent(v || "") + (cur = query()) + (lc ? "&since=" + encodeURIComponent(lc) : "")));
            var on = function (e) {
              var m;
              try {
                m = JSON.parse(e.data);
              } catch (x) {}
              if (s != ws || !m) return;
              if (e.type == "close" && m.event === undefined) {
                s.close();
                closed(m.code, m.reason);
              } else if (m.message !== undefined) {
                if (e.lastEventId) lc = e.lastEventId;
                message(env ? e.data : typeof m.message == "string" ? m.message : JSON.stringify(m.message));
              } else if (m.recovered === false) gap(m.event);
            };
            subs.forEach(function (x, e) {
              s.addEventListener(e, on);
            });
            s.addEventListener("close", on);
            s.addEventListener("gap", on);
          } else {
            s = ws = new WS(wsUrl);
            s.onmessage = function (e) {
              if (s == ws) message(e.data);
            };
            s.onclose = function (e) {
              if (s == ws) closed(e.code, e.reason);
            };
          }
          // A push on an event named "open" or "error" has data.
          s.onopen = function (e) {
            if (s != ws || (e && e.data != null)) return;
            if (sse) {
              retried = false;
              flush();
            } else subs.forEach(register);
            live = true;
            early = 0;
            openedAt = now();
            set("open");
          };
          // Means 1006: don't wait for a close event (Node may send none);
          // stop an EventSource reconnecting by itself.
          s.onerror = function (e) {
            if (s != ws || (e && e.data != null)) return;
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

    // Throw the current socket or stream away and settle its waiters.
    function drop(err) {
      gen++;
      clearT(timer);
      clearT(rt);
      timer = null;
      if (ws)
        try {
          ws.close(1000);
        } catch (x) {}
      ws = null;
      live = false;
      flush(err);
    }

    function flush(err) {
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

    // Ended by the server or network, or failed; also SSE's `event: close`.
    function closed(code, reason) {
      var wasOpen = live;
      ws = null;
      live = false;
      flush(failure(code, reason || "connection closed"));
      if (code == 4401 || code == 4403) return authFailed(code, reason);
      if (code == 4001) {
        stop(failure(code, reason));
        if (c.onclose) c.onclose({ code: code, reason: reason });
        return;
      }
      if (wasOpen && now() - openedAt >= 10000) fails = 0;
      if (!wasOpen && code) early++; // 0: the token function failed
      var info = { code: code, reason: reason },
        sw = auto && early == 3 && !sse && ES;
      if (sw) {
        sse = true;
        early = fails = 0;
        info.reason = "no WebSocket connection after 3 attempts; trying Server-Sent Events";
      }
      fails += code == 1013 || !wasOpen ? 2 : 1;
      var slow = early >= 3,
        tell = subs.size > 0 && (sw || early == 3);
      if (tell && !sw) info.reason = "no connection after 3 attempts (origin not allowed? wrong URL? server down?); retrying every 15-30 s";
      if (!subs.size) parked = true;
      else timer = setT(start, (info.delay = slow ? 15000 * (1 + random()) : random() * Math.min(30000, 500 * Math.pow(2, fails - 1))));
      set("reconnecting", info, tell);
    }

    function sched(v) {
      clearT(rt);
      if (typeof o.token == "function")
        try {
          var p = JSON.parse(atob(v.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))),
            n = now() / 1000,
            i = p.iat || n,
            l = p.exp - i,
            d = 1000 * (i + Math.max(Math.min(0.8 * l, l - 30), l / 2) - n);
          // Timers overflow past 2^31 ms.
          if (l > 0) rt = d > 2e9 ? setT(function () { sched(v); }, 2e9) : setT(refresh, Math.max(0, d));
        } catch (x) {}
    }

    function refresh() {
      var s = ws;
      if (live)
        sse
          ? start()
          : new Promise(function (r) {
              r(o.token());
            }).then(
              function (v) {
                if (s == ws && live) send({ type: "refresh", token: v }, 0, [], sched((token = v)));
              },
              function () {}, // the old token serves until exp
            );
    }

    function message(data) {
      var m;
      if (env || data.slice(0, 6) == '{"id":')
        try {
          m = JSON.parse(data);
        } catch (x) {}
      var p = m && !sse && pend.get(m.id);
      if (p && typeof m.ok == "boolean") {
        pend.delete(m.id);
        if (m.ok) {
          if (!p.u) retried = false;
          if (m.recovered === false) gap(p.e);
          return settle(p.w);
        }
        var err = failure(m.code, m.error);
        settle(p.w, err);
        if (p.u) return;
        // "event not allowed" refuses this event only.
        if (m.code == 4401 || (m.code == 4403 && m.error != "event not allowed")) return authFailed(m.code, m.error);
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
        var s = subs.get(m.event);
        if (m.cursor) s.c = lc = m.cursor;
        s.h(m.message, m.event);
      }
    }

    function gap(e) {
      if (c.onGap) c.onGap(e);
    }

    start();
    return c;
  }

  var api = { connect: connect };
  G.wspush = api;
  if (typeof module == "object" && module && typeof exports == "object") exports.connect = connect;
})(globalThis);
