// The live monitor. Every incoming job-update only records the job's newest snapshot;
// one requestAnimationFrame callback per frame writes all pending changes to the DOM
// (writes only, no layout reads), so 200 jobs updating many times a second still cost
// at most one style/layout pass per frame.
(function () {
  "use strict";

  // Status labels and which statuses are live or active come from the server
  // (#ja-job-states, rendered from jobs.models): filled in by start().
  var STATUS_LABEL = {};
  var LIVE = {};    // shown in the table: queued, running, paused
  var ACTIVE = {};  // holding a slot: counted as "active"
  var FEED_SIZE = 20;

  var root, body, emptyNote, feedList, toasts, indicator, jobUrl;
  var rows = new Map();      // job id -> row record (DOM nodes and the values they show)
  var pending = new Map();   // job id -> newest snapshot not yet drawn
  var newestEvent = new Map();  // job id -> event_id of the newest snapshot received
  var feedPending = [];
  var frameRequested = false;
  var stats = { messages: 0, flushes: 0, writes: 0, flushMs: 0, maxFlushMs: 0 };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function etaText(eta) {
    if (!eta) return "—";
    var seconds = Math.round((Date.parse(eta) - Date.now()) / 1000);
    if (!isFinite(seconds)) return "—";
    if (seconds <= 0) return "any moment";
    if (seconds < 90) return "in " + seconds + " s";
    if (seconds < 5400) return "in " + Math.round(seconds / 60) + " min";
    return "in " + Math.round(seconds / 3600) + " h";
  }

  function itemsText(job) {
    var total = job.total_items === null || job.total_items === undefined ? "?" : job.total_items;
    return job.processed_items + " / " + total + (job.error_count ? " (" + job.error_count + " errors)" : "");
  }

  function createRow(job) {
    var tr = el("tr", "ja-job-row");
    tr.dataset.jobId = job.id;
    var tdJob = el("td");
    var link = el("a", "ja-mono", job.type + " " + job.id.slice(0, 8));
    link.href = jobUrl + job.id + "/change/";
    tdJob.appendChild(link);
    var badge = el("span", "ja-badge");
    var tdStatus = el("td");
    tdStatus.appendChild(badge);
    var bar = el("span", "ja-progress");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-label", "Progress of " + job.type + " " + job.id.slice(0, 8));
    var fill = el("span", "ja-progress-fill");
    var pct = el("span", "ja-progress-text");
    bar.appendChild(fill);
    bar.appendChild(pct);
    var tdBar = el("td", "ja-col-progress");
    tdBar.appendChild(bar);
    var tdStep = el("td"), tdItems = el("td"), tdEta = el("td");
    tr.appendChild(tdJob); tr.appendChild(tdStatus); tr.appendChild(tdBar);
    tr.appendChild(tdStep); tr.appendChild(tdItems); tr.appendChild(tdEta);
    return { tr: tr, badge: badge, bar: bar, fill: fill, pct: pct, step: tdStep, items: tdItems, eta: tdEta,
             shown: {}, updatedAt: "" };
  }

  function set(row, key, value, write) {
    if (row.shown[key] === value) return;
    row.shown[key] = value;
    write(value);
    stats.writes += 1;
  }

  function draw(row, job) {
    row.lastJob = job;
    var progress = Math.max(0, Math.min(100, Math.round(job.progress || 0)));
    set(row, "status", job.status, function (v) {
      row.badge.className = "ja-badge ja-status-" + v;
      row.badge.textContent = STATUS_LABEL[v] || v;
      row.tr.dataset.status = v;
    });
    set(row, "progress", progress, function (v) {
      // transform, not width: the bar moves on the compositor without a layout.
      row.fill.style.transform = "scaleX(" + v / 100 + ")";
      row.pct.textContent = v + "%";
      row.bar.setAttribute("aria-valuenow", String(v));
    });
    set(row, "step", job.step_name || "", function (v) { row.step.textContent = v || "—"; });
    set(row, "items", itemsText(job), function (v) { row.items.textContent = v; });
    set(row, "eta", etaText(job.eta), function (v) { row.eta.textContent = v; });
  }

  function feedItem(job) {
    var li = el("li", "ja-feed-item");
    li.dataset.jobId = job.id;
    var badge = el("span", "ja-badge ja-status-" + job.status, STATUS_LABEL[job.status] || job.status);
    var link = el("a", "ja-mono", " " + job.type + " " + job.id.slice(0, 8));
    link.href = jobUrl + job.id + "/change/";
    li.appendChild(badge);
    li.appendChild(link);
    var when = job.finished_at || job.updated_at;
    if (when) li.appendChild(el("span", "", " · " + new Date(when).toLocaleTimeString()));
    if (job.status === "failed" && job.error) li.appendChild(el("div", "ja-error", job.error));
    return li;
  }

  function flush() {
    var started = performance.now();
    frameRequested = false;
    stats.flushes += 1;
    var fragment = null;
    pending.forEach(function (job, id) {
      var row = rows.get(id);
      if (row && job.updated_at && row.updatedAt && job.updated_at < row.updatedAt) return;  // stale replay
      if (LIVE[job.status]) {
        if (!row) {
          row = createRow(job);
          rows.set(id, row);
          if (!fragment) fragment = document.createDocumentFragment();
          fragment.appendChild(row.tr);
        }
        row.updatedAt = job.updated_at || row.updatedAt;
        draw(row, job);
      } else {
        if (row) {
          row.tr.remove();
          rows.delete(id);
        }
        if (job.status === "completed" || job.status === "failed") feedPending.push(job);
      }
    });
    pending.clear();
    if (fragment) body.appendChild(fragment);
    if (feedPending.length) {
      var items = document.createDocumentFragment();
      for (var i = feedPending.length - 1; i >= 0; i--) items.appendChild(feedItem(feedPending[i]));
      feedPending = [];
      feedList.insertBefore(items, feedList.firstChild);
      while (feedList.children.length > FEED_SIZE) feedList.removeChild(feedList.lastChild);
    }
    var active = 0, queued = 0;
    rows.forEach(function (row) {
      if (ACTIVE[row.shown.status]) active += 1; else if (row.shown.status === "queued") queued += 1;
    });
    paintCount("active", active);
    paintCount("queued", queued);
    var empty = rows.size === 0;
    if (emptyNote.hidden !== !empty) emptyNote.hidden = !empty;
    var spent = performance.now() - started;
    stats.flushMs += spent;
    if (spent > stats.maxFlushMs) stats.maxFlushMs = spent;
  }

  var countNodes = {};
  function paintCount(name, value) {
    var node = countNodes[name] || (countNodes[name] = root.querySelector('[data-count="' + name + '"]'));
    if (node && node.textContent !== String(value)) node.textContent = String(value);
  }

  function requestFrame() {
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(flush);
    }
  }

  // --- alerts ------------------------------------------------------------------------------
  function optedIn(name) { return window.localStorage.getItem("jobadmin.optin." + name) === "1"; }

  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      var ctx = new Ctx();
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.frequency.value = 880;
      gain.gain.value = 0.08;
      osc.connect(gain); gain.connect(ctx.destination);
      osc.start(); osc.stop(ctx.currentTime + 0.2);
    } catch (e) { /* no audio: the toast is enough */ }
  }

  function showAlert(alert) {
    var toast = el("div", "ja-toast ja-toast-" + (alert.severity || "warning"));
    toast.setAttribute("role", "alert");
    toast.dataset.alertId = alert.id;
    toast.appendChild(el("strong", "", (alert.severity || "alert").toUpperCase() + " · " + (alert.rule || "alert") + ": "));
    toast.appendChild(el("span", "", alert.message || ""));
    var close = el("button", "button", "Dismiss");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss alert " + (alert.rule || ""));
    close.addEventListener("click", function () { toast.remove(); });
    toast.appendChild(close);
    toasts.appendChild(toast);
    while (toasts.children.length > 5) toasts.removeChild(toasts.firstChild);
    if (optedIn("notify") && window.Notification && Notification.permission === "granted") {
      try { new Notification("JobAdmin: " + (alert.rule || "alert"), { body: alert.message || "" }); } catch (e) { /* ignore */ }
    }
    if (optedIn("sound")) beep();
  }

  function setupOptIns() {
    root.querySelectorAll("[data-optin]").forEach(function (box) {
      var name = box.dataset.optin;
      box.checked = optedIn(name);
      box.addEventListener("change", function () {
        window.localStorage.setItem("jobadmin.optin." + name, box.checked ? "1" : "0");
        if (name === "notify" && box.checked && window.Notification && Notification.permission === "default") {
          Notification.requestPermission();
        }
      });
    });
  }

  // --- queues and stalled jobs (polled) ------------------------------------------------------
  var stateTimer = null;
  function paintState(state) {
    (state.queues || []).forEach(function (q) {
      var tr = root.querySelector('tr[data-queue="' + q.name + '"]');
      if (!tr) return;
      ["queued", "running", "capacity", "utilisation"].forEach(function (key) {
        var cell = tr.querySelector('[data-queue-field="' + key + '"]');
        if (cell && cell.textContent !== String(q[key])) cell.textContent = String(q[key]);
      });
      var paused = tr.querySelector("[data-queue-paused]");
      if (paused) paused.hidden = !q.paused;
    });
    var banner = root.querySelector("[data-stalled-banner]");
    if (banner) {
      banner.hidden = !state.stalled;
      var text = banner.querySelector("[data-stalled-text]");
      if (text && state.stalled) text.textContent = state.stalled + (state.stalled === 1 ? " job looks" : " jobs look") + " stalled (no heartbeat).";
    }
  }
  function pollState() {
    fetch(root.dataset.stateUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) { if (state) paintState(state); })
      .catch(function () { /* the indicator already says we are offline */ });
  }
  function pollSoon() {
    clearTimeout(stateTimer);
    stateTimer = setTimeout(pollState, 300);
  }

  // --- messages ------------------------------------------------------------------------------
  function handle(message) {
    stats.messages += 1;
    if (message.type === "job-update" && message.job && message.job.id) {
      // Events can arrive late and out of order (a catch-up after a layer outage): an older
      // snapshot of a job never overwrites a newer one.
      var newest = newestEvent.get(message.job.id) || 0;
      if (message.event_id <= newest) return;
      newestEvent.set(message.job.id, message.event_id);
      pending.set(message.job.id, message.job);
      requestFrame();
      if (!LIVE[message.job.status] || message.kind === "created" || message.kind === "started") pollSoon();
    } else if (message.type === "job-alert" && message.alert) {
      showAlert(message.alert);
    } else if (message.type === "job-stats") {
      pollSoon();
    }
  }

  function start() {
    root = document.querySelector(".ja-monitor");
    if (!root) return;
    body = root.querySelector("[data-jobs-body]");
    emptyNote = root.querySelector("[data-jobs-empty]");
    feedList = root.querySelector("[data-feed]");
    toasts = root.querySelector("[data-toasts]");
    indicator = root.querySelector("[data-live-indicator]");
    jobUrl = root.dataset.jobUrl;
    var states = JSON.parse(document.getElementById("ja-job-states").textContent);
    STATUS_LABEL = states.labels;
    states.live.forEach(function (status) { LIVE[status] = true; });
    states.active.forEach(function (status) { ACTIVE[status] = true; });
    var initial = JSON.parse(document.getElementById("ja-jobs-initial").textContent);
    initial.forEach(function (job) { pending.set(job.id, job); });
    var feed = JSON.parse(document.getElementById("ja-feed-initial").textContent);
    feed.reverse().forEach(function (job) { feedPending.push(job); });
    flush();
    setupOptIns();
    setInterval(pollState, 5000);
    setInterval(function () {  // ETAs count down between updates, drawn in the next frame like the rest
      rows.forEach(function (row, id) { if (row.lastJob && !pending.has(id)) pending.set(id, row.lastJob); });
      requestFrame();
    }, 1000);
    var connection = new window.JobAdminConnection({
      path: root.dataset.wsPath,
      channels: ["all", "alerts", "stats"],
      since: parseInt(root.dataset.since || "0", 10),
      onMessage: handle,
      onState: function (state) {
        window.JobAdminConnection.paintIndicator(indicator, state);
        if (state === "live") pollState();
      }
    });
    connection.connect();
    window.JobAdminMonitor = { handle: handle, stats: stats, rows: rows, connection: connection };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
