// The staff pages' websocket connection (/ws/jobs/, protocol in DESIGN.md).
// Subscribes to the given channels with `since` = the last event_id seen, so that after
// a reconnect the server replays what was missed; reconnects with capped back-off and
// reports its state ("connecting" | "live" | "reconnecting") to onState.
(function () {
  "use strict";

  function JobAdminConnection(options) {
    this.path = options.path || "/ws/jobs/";
    this.channels = options.channels || [];
    this.onMessage = options.onMessage || function () {};
    this.onState = options.onState || function () {};
    this.since = options.since || 0;
    this.attempt = 0;
    this.socket = null;
    this.pingTimer = null;
    this.closedByUs = false;
    this.state = "connecting";
  }

  JobAdminConnection.prototype.url = function () {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + this.path;
  };

  JobAdminConnection.prototype.setState = function (state) {
    if (state === this.state) return;
    this.state = state;
    this.onState(state);
  };

  JobAdminConnection.prototype.connect = function () {
    var self = this;
    var socket;
    try {
      socket = new WebSocket(this.url());
    } catch (e) {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = function () {
      self.attempt = 0;
      self.channels.forEach(function (channel) {
        var message = { type: "subscribe", channel: channel };
        if (channel !== "stats" && self.since) message.since = self.since;
        socket.send(JSON.stringify(message));
      });
      clearInterval(self.pingTimer);
      self.pingTimer = setInterval(function () {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping", ts: Date.now() }));
      }, 20000);
    };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "subscribed") self.setState("live");
      if (typeof message.event_id === "number" && message.event_id > self.since) self.since = message.event_id;
      self.onMessage(message);
    };
    socket.onclose = function () {
      clearInterval(self.pingTimer);
      if (self.closedByUs) return;
      self.setState("reconnecting");
      self.scheduleReconnect();
    };
    socket.onerror = function () { /* onclose follows */ };
  };

  JobAdminConnection.prototype.scheduleReconnect = function () {
    var self = this;
    this.attempt += 1;
    var delay = Math.min(5000, 250 * Math.pow(2, this.attempt - 1)) * (0.75 + Math.random() * 0.5);
    setTimeout(function () { self.connect(); }, delay);
  };

  JobAdminConnection.prototype.send = function (message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  };

  JobAdminConnection.prototype.close = function () {
    this.closedByUs = true;
    if (this.socket) this.socket.close();
  };

  // Paint a "Live" / "Reconnecting…" indicator element.
  JobAdminConnection.paintIndicator = function (el, state) {
    if (!el) return;
    el.dataset.state = state;
    el.textContent = state === "live" ? "Live" : state === "reconnecting" ? "Reconnecting…" : "Connecting…";
  };

  window.JobAdminConnection = JobAdminConnection;
})();
