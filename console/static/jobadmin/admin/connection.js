// The staff pages' use of the live client (static/jobadmin/live.js, protocol in DESIGN.md):
// subscribe to channels from the page's own event id (so the server replays what happened
// between rendering and connecting), forward messages to one handler, and report the
// connection for the indicator: which transport (websocket, or the SSE / long-poll fallback),
// how many attempts, when the last message came, a "Reconnect now" control, and the page's
// data marked stale (`data-live-stale` on its root) while it is not live for a few seconds.
(function () {
  "use strict";

  var STALE_AFTER = 4000; // ms without a live connection after which the page's data is stale

  function urlsFrom(root) {
    var el = root || document.querySelector("[data-stream-path]");
    return el ? { stream: el.dataset.streamPath || null, poll: el.dataset.pollPath || null } : { stream: null, poll: null };
  }

  function JobAdminConnection(options) {
    this.channels = options.channels || [];
    this.onMessage = options.onMessage || function () {};
    this.onState = options.onState || function () {};
    this.since = options.since || 0;
    var urls = urlsFrom(document.querySelector("[data-stream-path]"));
    // Staff watch a screen: come back within a few seconds rather than the default 30 s ceiling.
    this.live = new window.JobAdminLive({ maxDelay: 5000, streamUrl: urls.stream, pollUrl: urls.poll });
    JobAdminConnection.current = this;
  }

  JobAdminConnection.prototype.connect = function () {
    var self = this;
    var live = this.live;
    live.addEventListener("status", function (event) { self.onState(event.detail.state, event.detail); });
    ["job-update", "job-alert", "job-stats"].forEach(function (type) {
      live.addEventListener(type, function (event) { self.onMessage(event.detail); });
    });
    this.channels.forEach(function (channel) {
      live.subscribe(channel, channel !== "stats" && self.since ? { since: self.since } : undefined);
    });
    live.connect();
    return this;
  };

  JobAdminConnection.prototype.close = function () {
    this.live.close();
  };

  var LABELS = { live: "Live", reconnecting: "Reconnecting…", connecting: "Connecting…", closed: "Offline",
                 unauthorized: "Signed out: reload to log in" };
  var TRANSPORT_LABELS = { websocket: "websocket", sse: "SSE (fallback)", "long-poll": "long-polling (fallback)" };

  function ago(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    return s < 60 ? s + " s ago" : Math.round(s / 60) + " min ago";
  }

  var painted = [];  // the indicators painted, repainted every second (the age of the last message)
  var notLiveSince = null;

  // The details and the control, beside the indicator (whose own text stays the bare state).
  function extras(el) {
    var box = el.nextElementSibling;
    if (box && box.hasAttribute("data-live-extras")) return box;
    box = document.createElement("span");
    box.className = "ja-live-extras";
    box.setAttribute("data-live-extras", "");
    var details = document.createElement("span");
    details.className = "ja-live-details";
    details.setAttribute("data-live-details", "");
    details.setAttribute("aria-hidden", "true"); // ticks every second: not announced each time
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button ja-live-reconnect";
    button.setAttribute("data-live-reconnect", "");
    button.textContent = "Reconnect now";
    button.addEventListener("click", function () {
      if (JobAdminConnection.current) JobAdminConnection.current.live.reconnectNow();
    });
    box.appendChild(details);
    box.appendChild(button);
    el.insertAdjacentElement("afterend", box);
    return box;
  }

  function paint(el, state) {
    var connection = JobAdminConnection.current;
    var info = connection ? connection.live.describe() : { state: state, transport: "websocket", attempts: 0 };
    el.dataset.state = state;
    el.dataset.transport = info.transport;
    el.textContent = (LABELS[state] || state) +
      (state === "live" && info.transport !== "websocket" ? " · " + TRANSPORT_LABELS[info.transport] : "");
    var box = extras(el);
    var parts = [];
    if (state !== "live" && info.transport !== "websocket") parts.push("trying " + TRANSPORT_LABELS[info.transport]);
    if (info.attempts > 1) parts.push(info.attempts + " attempts");
    parts.push(info.lastMessageAt ? "last message " + ago(Date.now() - info.lastMessageAt) : "no message yet");
    if (notLiveSince !== null && Date.now() - notLiveSince > STALE_AFTER) parts.push("the data may be out of date");
    box.querySelector("[data-live-details]").textContent = parts.join(" · ");
    // "Reconnect now" while not live, or live over a fallback (to try the websocket again).
    box.querySelector("[data-live-reconnect]").hidden = state === "unauthorized" ||
      (state === "live" && info.transport === "websocket");
    if (state === "live") notLiveSince = null; else if (notLiveSince === null) notLiveSince = Date.now();
    var stale = notLiveSince !== null && Date.now() - notLiveSince > STALE_AFTER;
    var root = el.closest(".ja-monitor, .ja-jobpage") || document.body;
    if (stale) root.dataset.liveStale = "true"; else delete root.dataset.liveStale;
    box.dataset.stale = stale ? "true" : "false";
    el.title = stale ? "The data on this page is not live: it may be out of date." : "";
  }

  // Paint a "Live · websocket" / "Reconnecting…" indicator element.
  JobAdminConnection.paintIndicator = function (el, state) {
    if (!el) return;
    if (painted.indexOf(el) < 0) painted.push(el);
    paint(el, state);
  };

  setInterval(function () {
    painted.forEach(function (el) { if (el.isConnected) paint(el, el.dataset.state); });
  }, 1000);

  window.JobAdminConnection = JobAdminConnection;
})();
