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
  };

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
    if (this.state === state) return;
    this.state = state;
    this._emit("status", Object.assign({ state: state, attempt: this.attempt }, extra || {}));
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
    if (this.socket) this.socket.close(1000);
    this._setState("closed");
  };

  JobAdminLive.prototype.subscribe = function (channel, options) {
    var since = options && typeof options.since === "number" ? options.since : null;
    this.channels.set(channel, { since: since });
    if (this.state === "live") this._send({ type: "subscribe", channel: channel, since: since === null ? undefined : since });
  };

  JobAdminLive.prototype.unsubscribe = function (channel) {
    this.channels.delete(channel);
    if (this.state === "live") this._send({ type: "unsubscribe", channel: channel });
  };

  JobAdminLive.prototype.requestStats = function () {
    this._send({ type: "request-stats" });
  };

  JobAdminLive.prototype._send = function (message) {
    if (this.socket && this.socket.readyState === 1) this.socket.send(JSON.stringify(message));
  };

  JobAdminLive.prototype._open = function () {
    var self = this;
    this._setState(this.attempt ? "reconnecting" : "connecting");
    var socket;
    try {
      socket = new WebSocket(this._url());
    } catch (err) {
      this._scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onmessage = function (frame) { self._onMessage(frame.data); };
    socket.onclose = function (event) {
      self._stopHeartbeat();
      if (self.socket !== socket) return;
      self.socket = null;
      if (self.stopped) return;
      if (event.code === 4401) { // not authenticated: retrying will not help
        self.stopped = true;
        self._setState("unauthorized", { code: event.code });
        return;
      }
      self._scheduleReconnect(event.code);
    };
  };

  JobAdminLive.prototype._scheduleReconnect = function (code) {
    var self = this;
    this.attempt += 1;
    // Full jitter: a random delay up to an exponentially growing ceiling, so that many
    // clients cut off together do not all come back at the same instant.
    var ceiling = Math.min(this.options.maxDelay, this.options.minDelay * Math.pow(2, this.attempt - 1));
    var delay = Math.random() * ceiling;
    this._setState("reconnecting", { code: code, delay: delay });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(function () { self._open(); }, delay);
  };

  JobAdminLive.prototype._resumeFrom = function () {
    return Math.max(0, this.lastEventId - this.options.resumeOverlap);
  };

  JobAdminLive.prototype._onMessage = function (data) {
    var message;
    try { message = JSON.parse(data); } catch (err) { return; }
    this._lastFrameAt = Date.now();
    switch (message.type) {
      case "welcome":
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
        this.attempt = 0;
        this._startHeartbeat();
        this._setState("live");
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
