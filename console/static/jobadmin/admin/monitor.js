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
  // Each type's health grade (GET /api/analytics/types/ over the page's grade range): rendered
  // with the page (#ja-type-grades), refreshed every minute. Job-updates do not carry it.
  var grades = {};
  var GRADE_REFRESH_MS = 60000;

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
    return job.processed_items + " / " + total;
  }

  function errorsText(job) {
    return job.error_count ? job.error_count + (job.error_count === 1 ? " error" : " errors") : "";
  }

  function createRow(job) {
    var tr = el("tr", "ja-job-row");
    tr.dataset.jobId = job.id;
    var tdJob = el("td");
    // The type, and the id's start under it: two short lines fit a narrow column.
    var link = el("a", "ja-mono ja-job-link");
    link.appendChild(el("span", "", job.type));
    link.appendChild(el("span", "ja-job-id", " " + job.id.slice(0, 8)));
    link.href = jobUrl + job.id + "/change/";
    link.title = job.type + " " + job.id;
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
    var grade = el("span", "ja-badge");
    var tdGrade = el("td");
    tdGrade.appendChild(grade);
    var tdStep = el("td"), tdItems = el("td"), tdEta = el("td");
    // Items done of the total, and the errors counted so far on a line of their own.
    var items = el("span", "ja-cell-line"), errors = el("span", "ja-cell-line ja-cell-errors");
    tdItems.appendChild(items);
    tdItems.appendChild(errors);
    tr.appendChild(tdJob); tr.appendChild(tdStatus); tr.appendChild(tdGrade); tr.appendChild(tdBar);
    tr.appendChild(tdStep); tr.appendChild(tdItems); tr.appendChild(tdEta);
    return { tr: tr, badge: badge, grade: grade, bar: bar, fill: fill, pct: pct, step: tdStep, items: items,
             errors: errors, eta: tdEta, shown: {}, updatedAt: "" };
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
    set(row, "grade", gradeOf(job.type), function (v) {
      // The word is the label (a type with no finished job in the range has none yet).
      row.grade.className = "ja-badge ja-grade-" + (v || "none");
      row.grade.textContent = v || "ungraded";
      row.tr.dataset.grade = v || "";
    });
    set(row, "step", job.step_name || "", function (v) { row.step.textContent = v || "—"; row.step.title = v; });
    set(row, "items", itemsText(job), function (v) { row.items.textContent = v; });
    set(row, "errors", errorsText(job), function (v) { row.errors.textContent = v; });
    set(row, "eta", etaText(job.eta), function (v) { row.eta.textContent = v; });
    // The ETA counts down in words; its time, in the viewer's zone like every time, is the title.
    set(row, "etaAt", job.eta || "", function (v) { row.eta.title = v ? window.JobAdminTime.format(v) : ""; });
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
    if (when) {
      li.appendChild(document.createTextNode(" · "));
      li.appendChild(window.JobAdminTime.element(when, "clock"));
    }
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

  function gradeOf(type) { return Object.prototype.hasOwnProperty.call(grades, type) ? grades[type] : null; }

  function loadGrades() {
    fetch(root.dataset.gradesUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) return;
        var next = {};
        body.results.forEach(function (t) { next[t.type] = t.grade; });
        grades = next;
        redrawAll();
      })
      .catch(function () { /* the grades shown stay; the indicator says when the page is offline */ });
  }

  // Every row again in the next frame (set() writes only what changed): ETAs count down, grades change.
  function redrawAll() {
    rows.forEach(function (row, id) { if (row.lastJob && !pending.has(id)) pending.set(id, row.lastJob); });
    requestFrame();
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

  // An alert is announced (toast, browser notification, sound) only when it is a new firing: its
  // status is "open" and the page has never seen that alert before — not in the open alerts it
  // rendered, not earlier on this page, not in the stored notification list. A resolved or
  // acknowledged alert updates the list in place; a replayed event (a reconnect resends with an
  // overlap) carries an event_id already applied and is dropped.
  var alerts = new Map();        // alert id -> newest alert object
  var alertEvent = new Map();    // alert id -> event_id of the newest change applied
  var alertList, alertEmpty, alertCount, notes, notesList, notesEmpty, unreadCount;
  var mayChangeAlerts = false;
  var announced = { toasts: 0, notifications: 0, sounds: 0 };
  var SEVERITY_LABEL = { info: "Info", warning: "Warning", critical: "Critical" };
  var STATUS_TEXT = { open: "Open", acknowledged: "Acknowledged", resolved: "Resolved" };

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function alertAction(alert, action, button) {
    var url = root.dataset[action === "acknowledge" ? "alertAcknowledgeUrl" : "alertResolveUrl"].replace("/0/", "/" + alert.id + "/");
    button.disabled = true;
    fetch(url, { method: "POST", credentials: "same-origin",
                 headers: { Accept: "application/json", "X-CSRFToken": csrfToken() } })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (result) {
        if (result.ok) applyAlert(result.body, null);
        else { button.disabled = false; button.title = result.body.detail || "Refused"; showNote(result.body.detail || "Refused", "warning"); }
      })
      .catch(function () { button.disabled = false; });
  }

  function alertItem(alert) {
    var li = el("li", "ja-alert ja-alert-" + alert.status);
    li.dataset.alertId = alert.id;
    li.dataset.status = alert.status;
    var head = el("div", "ja-alert-head");
    head.appendChild(el("span", "ja-badge ja-sev-" + alert.severity, SEVERITY_LABEL[alert.severity] || alert.severity));
    head.appendChild(el("strong", "", " " + alert.rule + " "));
    head.appendChild(el("span", "ja-badge ja-alert-status", STATUS_TEXT[alert.status] || alert.status));
    li.appendChild(head);
    li.appendChild(el("div", "ja-alert-message", alert.message || ""));
    var meta = el("div", "ja-help");
    meta.appendChild(document.createTextNode("Fired "));
    meta.appendChild(window.JobAdminTime.element(alert.created_at));
    if (alert.status === "resolved" && alert.resolved_at) {
      meta.appendChild(document.createTextNode(" · resolved "));
      meta.appendChild(window.JobAdminTime.element(alert.resolved_at));
    }
    li.appendChild(meta);
    if (mayChangeAlerts && alert.status !== "resolved") {
      var actions = el("div", "ja-alert-actions");
      if (alert.status === "open") {
        var ack = el("button", "button", "Acknowledge");
        ack.type = "button";
        ack.setAttribute("aria-label", "Acknowledge alert " + alert.rule);
        ack.addEventListener("click", function () { alertAction(alert, "acknowledge", ack); });
        actions.appendChild(ack);
      }
      var res = el("button", "button", "Resolve");
      res.type = "button";
      res.setAttribute("aria-label", "Resolve alert " + alert.rule);
      res.addEventListener("click", function () { alertAction(alert, "resolve", res); });
      actions.appendChild(res);
      li.appendChild(actions);
    }
    return li;
  }

  function paintAlerts() {
    if (!alertList) return;
    var shown = [];
    alerts.forEach(function (alert) { if (alert.status !== "resolved" || alert._justResolved) shown.push(alert); });
    shown.sort(function (x, y) { return x.created_at < y.created_at ? 1 : -1; });
    var fragment = document.createDocumentFragment();
    shown.forEach(function (alert) { fragment.appendChild(alertItem(alert)); });
    alertList.replaceChildren(fragment);
    var open = shown.filter(function (a) { return a.status !== "resolved"; }).length;
    alertCount.textContent = String(open);
    alertEmpty.hidden = shown.length > 0;
  }

  function paintNotes() {
    if (!notesList) return;
    var fragment = document.createDocumentFragment();
    notes.items.forEach(function (item) {
      var li = el("li", "ja-alert ja-note ja-alert-" + item.status + (item.read ? " ja-read" : " ja-unread"));
      li.dataset.key = item.key;
      li.dataset.status = item.status;
      li.dataset.read = item.read ? "1" : "0";
      var head = el("div", "ja-alert-head");
      head.appendChild(el("span", "ja-badge ja-sev-" + item.severity, SEVERITY_LABEL[item.severity] || item.severity));
      head.appendChild(el("strong", "", " " + item.rule + " "));
      head.appendChild(el("span", "ja-badge ja-alert-status", STATUS_TEXT[item.status] || item.status));
      if (!item.read) head.appendChild(el("span", "ja-unread-dot", " · unread"));
      li.appendChild(head);
      li.appendChild(el("div", "ja-alert-message", item.message || ""));
      var meta = el("div", "ja-help");
      meta.appendChild(window.JobAdminTime.element(item.at));
      if (!item.read) {
        var read = el("button", "ja-link-button", "Mark read");
        read.type = "button";
        read.addEventListener("click", function () { notes.markRead(item.key); });
        meta.appendChild(document.createTextNode(" "));
        meta.appendChild(read);
      }
      li.appendChild(meta);
      fragment.appendChild(li);
    });
    notesList.replaceChildren(fragment);
    unreadCount.textContent = String(notes.unread());
    notesEmpty.hidden = notes.items.length > 0;
  }

  function showNote(text, severity) {
    var toast = el("div", "ja-toast ja-toast-" + (severity || "warning"));
    toast.setAttribute("role", "status");
    toast.textContent = text;
    toasts.appendChild(toast);
    setTimeout(function () { toast.remove(); }, 6000);
  }

  function announce(alert) {
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
    announced.toasts += 1;
    if (optedIn("notify") && window.Notification && Notification.permission === "granted") {
      try { new Notification("JobAdmin: " + (alert.rule || "alert"), { body: alert.message || "" }); announced.notifications += 1; }
      catch (e) { /* ignore */ }
    }
    if (optedIn("sound")) { beep(); announced.sounds += 1; }
  }

  // Apply one alert change. eventId null: an answer of the API (our own acknowledge / resolve).
  // quiet: a catch-up after a pause: listed, never announced.
  function applyAlert(alert, eventId, quiet) {
    if (eventId !== null) {
      var newest = alertEvent.get(alert.id) || 0;
      if (eventId <= newest) return;  // a replay of a change already applied
      alertEvent.set(alert.id, eventId);
    }
    var before = alerts.get(alert.id);
    if (before && before.updated_at && alert.updated_at && alert.updated_at < before.updated_at) return;  // older
    var isNew = !before && !notes.knows(alert.id);
    if (before && before.status === alert.status && eventId !== null) { alerts.set(alert.id, Object.assign({}, before, alert)); return; }
    var merged = Object.assign({}, before || {}, alert);
    if (merged.status === "resolved") {
      merged._justResolved = true;
      if (!merged.resolved_at) merged.resolved_at = merged.updated_at;
    }
    alerts.set(alert.id, merged);
    notes.add(merged);
    paintAlerts();
    if (merged.status === "open" && isNew && !quiet) announce(merged);
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
  var paused = false;
  var held = [];
  var HOLD_LIMIT = 20000;

  function handle(message) {
    stats.messages += 1;
    if (paused) {
      // Paused: nothing is applied; the messages wait for the catch-up (bounded: past the limit
      // the oldest job updates go, which the catch-up's poll and the newer updates make good).
      held.push(message);
      if (held.length > HOLD_LIMIT) held.shift();
      pausedBadge.textContent = "Paused · " + held.length + " update" + (held.length === 1 ? "" : "s") + " waiting";
      return;
    }
    apply(message, false);
  }

  function apply(message, quiet) {
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
      if (alertList) applyAlert(message.alert, message.event_id, quiet);
    } else if (message.type === "job-stats") {
      pollSoon();
    }
  }

  var pausedBadge, pauseButton;
  function setPaused(value) {
    paused = value;
    pausedBadge.hidden = !value;
    pausedBadge.textContent = "Paused";
    pauseButton.textContent = value ? "Resume live updates" : "Pause live updates";
    pauseButton.setAttribute("aria-pressed", value ? "true" : "false");
    root.dataset.paused = value ? "1" : "0";
    if (!value) {
      // Catch up: what arrived while paused, in order (stale job snapshots drop out in apply),
      // alerts listed but not announced; then fresh queue figures.
      var waiting = held;
      held = [];
      waiting.forEach(function (message) { apply(message, true); });
      pollState();
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
    grades = JSON.parse(document.getElementById("ja-type-grades").textContent);
    var initial = JSON.parse(document.getElementById("ja-jobs-initial").textContent);
    initial.forEach(function (job) { pending.set(job.id, job); });
    var feed = JSON.parse(document.getElementById("ja-feed-initial").textContent);
    feed.reverse().forEach(function (job) { feedPending.push(job); });
    flush();
    setupOptIns();
    pausedBadge = root.querySelector("[data-paused-badge]");
    pauseButton = root.querySelector("[data-pause-toggle]");
    pauseButton.addEventListener("click", function () { setPaused(!paused); });
    alertList = root.querySelector("[data-open-alerts]");
    if (alertList) {
      mayChangeAlerts = root.dataset.mayChangeAlerts === "1";
      alertEmpty = root.querySelector("[data-open-alerts-empty]");
      alertCount = root.querySelector("[data-open-alert-count]");
      notesList = root.querySelector("[data-notes]");
      notesEmpty = root.querySelector("[data-notes-empty]");
      unreadCount = root.querySelector("[data-unread-count]");
      notes = new window.JobAdminNotifications(root.dataset.userId);
      notes.onChange(paintNotes);
      root.querySelector("[data-notes-read]").addEventListener("click", function () { notes.markAllRead(); });
      root.querySelector("[data-notes-clear]").addEventListener("click", function () { notes.clear(); });
      JSON.parse(document.getElementById("ja-alerts-initial").textContent).forEach(function (alert) {
        alerts.set(alert.id, alert);
      });
      paintAlerts();
      paintNotes();
    }
    setInterval(pollState, 5000);
    setInterval(loadGrades, GRADE_REFRESH_MS);
    setInterval(redrawAll, 1000);  // ETAs count down between updates
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
    window.JobAdminMonitor = { handle: handle, stats: stats, rows: rows, connection: connection, alerts: alerts,
                               announced: announced, notifications: notes, setPaused: setPaused, refreshGrades: loadGrades,
                               held: function () { return held.length; } };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
