// The staff pages' use of the live client (static/jobadmin/live.js, protocol in DESIGN.md):
// subscribe to channels from the page's own event id (so the server replays what happened
// between rendering and connecting), forward messages to one handler, and report the
// connection state for the "Live" / "Reconnecting…" indicator.
(function () {
  "use strict";

  function JobAdminConnection(options) {
    this.channels = options.channels || [];
    this.onMessage = options.onMessage || function () {};
    this.onState = options.onState || function () {};
    this.since = options.since || 0;
    // Staff watch a screen: come back within a few seconds rather than the default 30 s ceiling.
    this.live = new window.JobAdminLive({ maxDelay: 5000 });
  }

  JobAdminConnection.prototype.connect = function () {
    var self = this;
    var live = this.live;
    live.addEventListener("status", function (event) { self.onState(event.detail.state); });
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

  // Paint a "Live" / "Reconnecting…" indicator element.
  JobAdminConnection.paintIndicator = function (el, state) {
    if (!el) return;
    el.dataset.state = state;
    el.textContent = LABELS[state] || state;
  };

  window.JobAdminConnection = JobAdminConnection;
})();
