/*
 * JobAdmin live updates: a small browser client for /ws/jobs/ (protocol: docs/websocket.md).
 * No build step, no dependencies; copy it as is.
 *
 *   const live = new JobAdminLive({ token: null });          // session cookie; or { token: "..." }
 *   live.addEventListener("status", (e) => show(e.detail.state));   // connecting | live | reconnecting | closed | unauthorized
 *   live.addEventListener("job-update", (e) => render(e.detail.job));
 *   live.addEventListener("job-alert", (e) => toast(e.detail.alert));
 *   live.addEventListener("job-stats", (e) => chart(e.detail.stats));
 *   live.subscribe("job:3f2a…");          // or "user:7", "stats", "alerts", "all"
 *   live.connect();
 *
 * On a lost connection it reconnects with exponential backoff and full jitter, and
 * subscribes to every channel again with `since`, so the server replays what was missed.
 * Every event_id is delivered to the page once (duplicates across reconnects are dropped).
 *
 * Where websockets do not get through (a proxy without upgrade support), it falls back by
 * itself: after `fallbackAfter` websocket attempts that never got a welcome, to Server-Sent
 * Events (`streamUrl`, GET /api/stream/), and after as many failed streams, to long-polling
 * (`pollUrl`, GET /api/events/); docs/live.md. Each "status" event says which `transport` is in
 * use, the `attempt` count and `lastMessageAt`; `reconnectNow()` starts over from the websocket.
 */
(function (global) {
  "use strict";

  var DEFAULTS = {
    url: null, // default: ws(s)://<this host>/ws/jobs/
    token: null, // API token, sent as ?token= (otherwise the session cookie authenticates)
    minDelay: 500, // ms, first reconnect delay ceiling
    maxDelay: 30000, // ms, largest reconnect delay ceiling
    pingInterval: 25000, // ms between pings while idle
    pongTimeout: 10000, // ms without any frame after a ping before the socket is considered dead
    resumeOverlap: 200, // resume this many ids early: events that committed late are not lost (dupes are dropped)
    seenLimit: 5000, // event ids remembered for de-duplication
    streamUrl: null, // GET /api/stream/ (SSE); null: no SSE fallback
    pollUrl: null, // GET /api/events/ (long-poll); null: no long-poll fallback
    fallbackAfter: 2, // failed attempts (never live) of one transport before the next one is tried
    welcomeTimeout: 5000, // ms an open websocket may take to say welcome before it counts as failed
    pollWait: 25, // s a long-poll waits for events
  };

  var TRANSPORTS = ["websocket", "sse", "long-poll"];

  function JobAdminLive(options) {
    this.options = Object.assign({}, DEFAULTS, options || {});
    this.channels = new Map(); // channel -> {since: number|null}
    this.lastEventId = 0;
    this.seen = new Set();
    this.seenOrder = [];
    this.attempt = 0;
    this.state = "closed";
    this.socket = null;
    this.stopped = true;
    this.transport = "websocket";
    this.failures = 0; // attempts of this transport since it was last live
    this.attempts = 0; // connection attempts in all, every transport
    this.lastMessageAt = null;
    this.stream = null; // the EventSource, on SSE
    this.poller = null; // the AbortController of the running long-poll
    this._target = typeof EventTarget === "function" ? new EventTarget() : null;
    this._listeners = {};
  }

  JobAdminLive.prototype.addEventListener = function (type, fn) {
    if (this._target) return this._target.addEventListener(type, fn);
    (this._listeners[type] = this._listeners[type] || []).push(fn);
  };

  JobAdminLive.prototype.removeEventListener = function (type, fn) {
    if (this._target) return this._target.removeEventListener(type, fn);
    this._listeners[type] = (this._listeners[type] || []).filter(function (f) { return f !== fn; });
  };

  JobAdminLive.prototype._emit = function (type, detail) {
    if (this._target) {
      this._target.dispatchEvent(new CustomEvent(type, { detail: detail }));
      return;
    }
    (this._listeners[type] || []).forEach(function (fn) { fn({ type: type, detail: detail }); });
  };

  JobAdminLive.prototype._setState = function (state, extra) {
    if (this.state === state && !(extra && extra.force)) return;
    this.state = state;
    this._emit("status", Object.assign({
      state: state, attempt: this.attempt, attempts: this.attempts, transport: this.transport,
      lastMessageAt: this.lastMessageAt
    }, extra || {}));
  };

  // Where the page's data stands: for an indicator ("Live over SSE, 3 attempts, last message 12 s ago").
  JobAdminLive.prototype.describe = function () {
    return { state: this.state, transport: this.transport, attempt: this.attempt, attempts: this.attempts,
             lastMessageAt: this.lastMessageAt };
  };

  JobAdminLive.prototype._url = function () {
    var url = this.options.url;
    if (!url) {
      var scheme = global.location.protocol === "https:" ? "wss:" : "ws:";
      url = scheme + "//" + global.location.host + "/ws/jobs/";
    }
    if (this.options.token) {
      url += (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(this.options.token);
    }
    return url;
  };

  JobAdminLive.prototype.connect = function () {
    this.stopped = false;
    this._open();
    return this;
  };

  JobAdminLive.prototype.close = function () {
    this.stopped = true;
    clearTimeout(this._retryTimer);
    this._stopHeartbeat();
    this._closeTransports();
    this._setState("closed");
  };

  JobAdminLive.prototype._closeTransports = function () {
    clearTimeout(this._welcomeTimer);
    var socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000);
    if (this.stream) { this.stream.close(); this.stream = null; }
    if (this.poller) { this.poller.abort(); this.poller = null; }
  };

  // Start over at once, from the websocket (a "Reconnect now" control).
  JobAdminLive.prototype.reconnectNow = function () {
    clearTimeout(this._retryTimer);
    this._stopHeartbeat();
    this._closeTransports();
    this.stopped = false;
    this.transport = "websocket";
    this.failures = 0;
    this._open();
  };

  JobAdminLive.prototype.subscribe = function (channel, options) {
    var since = options && typeof options.since === "number" ? options.since : null;
    this.channels.set(channel, { since: since });
    if (this.state !== "live") return;
    if (this.transport === "websocket") {
      this._send({ type: "subscribe", channel: channel, since: since === null ? undefined : since });
    } else {
      this.reconnectNow(); // a stream's or poll's channels are in its URL
    }
  };

  JobAdminLive.prototype.unsubscribe = function (channel) {
    this.channels.delete(channel);
    if (this.state === "live" && this.transport === "websocket") this._send({ type: "unsubscribe", channel: channel });
  };

  JobAdminLive.prototype.requestStats = function () {
    this._send({ type: "request-stats" });
  };

  JobAdminLive.prototype._send = function (message) {
    if (this.socket && this.socket.readyState === 1) this.socket.send(JSON.stringify(message));
  };

  JobAdminLive.prototype._open = function () {
    this.attempts += 1;
    this._setState(this.attempt ? "reconnecting" : "connecting", { force: true });
    if (this.transport === "sse") return this._openStream();
    if (this.transport === "long-poll") return this._poll(true);
    return this._openSocket();
  };

  JobAdminLive.prototype._openSocket = function () {
    var self = this;
    var socket;
    try {
      socket = new WebSocket(this._url());
    } catch (err) {
      this._failed(false);
      return;
    }
    this.socket = socket;
    this._welcomed = false;
    clearTimeout(this._welcomeTimer);
    // Open but silent (a proxy that swallows the upgrade's frames) counts as failed too.
    this._welcomeTimer = setTimeout(function () {
      if (self.socket === socket && !self._welcomed) socket.close(4000);
    }, this.options.welcomeTimeout);
    socket.onmessage = function (frame) { self._onMessage(frame.data); };
    socket.onclose = function (event) {
      self._stopHeartbeat();
      clearTimeout(self._welcomeTimer);
      if (self.socket !== socket) return;
      self.socket = null;
      if (self.stopped) return;
      if (event.code === 4401) { // not authenticated: retrying will not help
        self.stopped = true;
        self._setState("unauthorized", { code: event.code });
        return;
      }
      self._failed(self._welcomed, event.code);
    };
  };

  // The channels and the resume point of a stream or poll URL.
  JobAdminLive.prototype._query = function (params) {
    var parts = [];
    var names = Array.from(this.channels.keys());
    if (names.length) parts.push("channels=" + encodeURIComponent(names.join(",")));
    Object.keys(params).forEach(function (name) {
      if (params[name] !== null && params[name] !== undefined) parts.push(name + "=" + encodeURIComponent(params[name]));
    });
    if (this.options.token) parts.push("token=" + encodeURIComponent(this.options.token));
    return parts.length ? "?" + parts.join("&") : "";
  };

  // Where a stream or the first poll resumes: a little before the newest id seen (late commits;
  // repeats are dropped), or the page's own `since`, or nothing (from now on).
  JobAdminLive.prototype._since = function () {
    if (this.lastEventId > 0) return this._resumeFrom();
    var since = null;
    this.channels.forEach(function (sub) {
      if (sub.since !== null && (since === null || sub.since < since)) since = sub.since;
    });
    return since;
  };

  JobAdminLive.prototype._becameLive = function () {
    this.attempt = 0;
    this.failures = 0;
    this._setState("live", { force: true });
  };

  JobAdminLive.prototype._openStream = function () {
    var self = this;
    var stream;
    try {
      stream = new EventSource(this.options.streamUrl + this._query({ since: this._since() }),
                               { withCredentials: !!this.options.withCredentials });
    } catch (err) {
      this._failed(false);
      return;
    }
    this.stream = stream;
    var opened = false;
    stream.onopen = function () { opened = true; self._becameLive(); };
    ["job-update", "job-alert", "job-stats"].forEach(function (type) {
      stream.addEventListener(type, function (event) { self._onMessage(event.data); });
    });
    stream.addEventListener("error", function (event) {
      if (self.stream !== stream) return;
      if (event.data) { self._onMessage(event.data); return; } // the server's own `error` event
      // The stream broke or was refused: reconnect ourselves, with `since`, counting the attempt
      // (the browser's own reconnect would resume from its Last-Event-ID only).
      stream.close();
      self.stream = null;
      if (!self.stopped) self._failed(opened);
    });
  };

  JobAdminLive.prototype._poll = function (first) {
    var self = this;
    var after = this._pollAfter;
    if (first) after = this._since();
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    this.poller = controller;
    var wait = after === null ? 0 : this.options.pollWait;
    fetch(this.options.pollUrl + this._query({ after: after, wait: wait }), {
      credentials: this.options.withCredentials ? "include" : "same-origin",
      headers: { Accept: "application/json" },
      signal: controller ? controller.signal : undefined,
    }).then(function (response) {
      if (self.poller !== controller) return null;
      if (response.status === 401) {
        self.stopped = true;
        self._setState("unauthorized", { code: 401 });
        return null;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (body) {
      if (!body || self.poller !== controller || self.stopped) return;
      if (self.state !== "live") self._becameLive();
      body.events.forEach(function (message) { self._onMessage(message); });
      self._pollAfter = body.last_event_id;
      self._poll(false);
    }).catch(function () {
      if (self.poller !== controller || self.stopped) return;
      self.poller = null;
      self._failed(self.state === "live");
    });
  };

  // A transport failed: one that was live is tried again; one that never got through
  // `fallbackAfter` times in a row gives way to the next one that is configured.
  JobAdminLive.prototype._failed = function (wasLive, code) {
    this.failures = wasLive ? 1 : this.failures + 1;
    if (!wasLive && this.failures >= this.options.fallbackAfter) {
      var next = this._nextTransport();
      if (next) {
        this.transport = next;
        this.failures = 0;
      }
    }
    this._scheduleReconnect(code);
  };

  JobAdminLive.prototype._nextTransport = function () {
    var urls = { sse: this.options.streamUrl && typeof EventSource === "function", "long-poll": this.options.pollUrl };
    for (var i = TRANSPORTS.indexOf(this.transport) + 1; i < TRANSPORTS.length; i++) {
      if (urls[TRANSPORTS[i]]) return TRANSPORTS[i];
    }
    return null;
  };

  JobAdminLive.prototype._scheduleReconnect = function (code) {
    var self = this;
    this.attempt += 1;
    // Full jitter: a random delay up to an exponentially growing ceiling, so that many
    // clients cut off together do not all come back at the same instant.
    var ceiling = Math.min(this.options.maxDelay, this.options.minDelay * Math.pow(2, this.attempt - 1));
    var delay = Math.random() * ceiling;
    this._setState("reconnecting", { code: code, delay: delay, force: true });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(function () { self._open(); }, delay);
  };

  JobAdminLive.prototype._resumeFrom = function () {
    return Math.max(0, this.lastEventId - this.options.resumeOverlap);
  };

  JobAdminLive.prototype._onMessage = function (data) {
    var message = data;
    if (typeof data === "string") {
      try { message = JSON.parse(data); } catch (err) { return; }
    }
    this._lastFrameAt = Date.now();
    if (message.type !== "pong" && message.type !== "welcome") this.lastMessageAt = this._lastFrameAt;
    switch (message.type) {
      case "welcome":
        this._welcomed = true;
        clearTimeout(this._welcomeTimer);
        var resuming = this.lastEventId > 0;
        if (!resuming) this.lastEventId = message.latest_event_id;
        var own = "user:" + message.user.id;
        var self = this;
        var since = resuming ? this._resumeFrom() : null;
        if (resuming) this._send({ type: "subscribe", channel: own, since: since }); // replay the auto-joined channel
        this.channels.forEach(function (sub, channel) {
          if (channel === own && resuming) return;
          var from = resuming ? since : sub.since;
          self._send({ type: "subscribe", channel: channel, since: from === null ? undefined : from });
        });
        this._startHeartbeat();
        this._becameLive();
        this._emit("welcome", message);
        return;
      case "job-update":
      case "job-alert":
        if (this._isDuplicate(message.event_id)) return;
        if (message.event_id > this.lastEventId) this.lastEventId = message.event_id;
        this._emit(message.type, message);
        return;
      case "pong":
        return;
      default: // subscribed, unsubscribed, job-stats, error
        this._emit(message.type, message);
    }
  };

  JobAdminLive.prototype._isDuplicate = function (eventId) {
    if (this.seen.has(eventId)) return true;
    this.seen.add(eventId);
    this.seenOrder.push(eventId);
    if (this.seenOrder.length > this.options.seenLimit) this.seen.delete(this.seenOrder.shift());
    return false;
  };

  JobAdminLive.prototype._startHeartbeat = function () {
    var self = this;
    this._stopHeartbeat();
    this._lastFrameAt = Date.now();
    this._heartbeat = setInterval(function () {
      var idle = Date.now() - self._lastFrameAt;
      if (idle > self.options.pingInterval + self.options.pongTimeout) {
        if (self.socket) self.socket.close(4000); // dead connection: onclose reconnects
        return;
      }
      if (idle >= self.options.pingInterval) self._send({ type: "ping", ts: Date.now() });
    }, Math.min(5000, this.options.pingInterval));
  };

  JobAdminLive.prototype._stopHeartbeat = function () {
    clearInterval(this._heartbeat);
  };

  global.JobAdminLive = JobAdminLive;
})(typeof window !== "undefined" ? window : globalThis);
