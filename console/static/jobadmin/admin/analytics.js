// The analytics page: fetches /api/stats/ and /api/analytics/* (and /api/metrics/) for the
// selected range and draws each chart with Chart.js (installed by npm, served as static).
(function () {
  "use strict";
  var INTERVAL = { "1h": "1m", "1d": "5m", "7d": "1h", "30d": "1d", "all": "1d" };
  var COLORS = { completed: "#2e7d32", failed: "#c62828", cancelled: "#757575", running: "#1565c0",
                 paused: "#ef6c00", queued: "#6a1b9a", created: "#00838f", cpu: "#1565c0", memory: "#ad1457",
                 queued_jobs: "#6a1b9a", running_jobs: "#ef6c00", line: "#00838f" };
  var STATUS_ORDER = ["queued", "running", "paused", "completed", "failed", "cancelled"];
  var root, api, range, charts = {};

  function css(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function get(path, params) {
    var query = new URLSearchParams(params || {});
    return fetch(api + path + "?" + query.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error(path + ": HTTP " + r.status);
        return r.json();
      });
  }

  function fmtSeconds(v) {
    if (v === null || v === undefined) return "—";
    return v < 60 ? v.toFixed(2) + " s" : (v / 60).toFixed(1) + " min";
  }
  // Axis labels in the viewer's zone (jobadmin/admin/time.js); each chart's title names the zone.
  var T = window.JobAdminTime;
  function fmtTime(iso) {
    if (range === "1h" || range === "1d") return T.hour(iso);
    if (range === "7d") return T.day(iso) + " " + T.hour(iso);
    return T.day(iso);
  }

  // Every time axis says its zone: the viewer's, but the daily buckets, which are the server's days.
  function zoneNotes() {
    var viewer = T.zoneId() + ", " + T.zone();
    root.querySelectorAll("[data-chart] [data-zone]").forEach(function (note) { note.textContent = "(" + viewer + ")"; });
    zoneNote("daily", "days in " + (root.dataset.serverZone || "UTC"));
  }

  function zoneNote(key, zone) {
    var note = root.querySelector('[data-chart="' + key + '"] [data-zone]');
    if (note) note.textContent = "(" + zone + ")";
  }

  function draw(key, config, points) {
    var figure = root.querySelector('[data-chart="' + key + '"]');
    if (!figure) return;
    var canvas = figure.querySelector("canvas");
    var empty = figure.querySelector("[data-chart-empty]");
    if (charts[key]) charts[key].destroy();
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: "bottom" } } }, config.options || {});
    charts[key] = new window.Chart(canvas, config);
    figure.dataset.points = String(points);
    figure.dataset.drawn = "true";
    empty.hidden = points > 0;
  }

  function count(values) {
    return values.filter(function (v) { return v !== null && v !== undefined && v !== 0; }).length;
  }

  function line(label, values, color, extra) {
    // Sparse series get visible points, so a single measured bucket still shows.
    var measured = values.filter(function (v) { return v !== null && v !== undefined; }).length;
    return Object.assign({ label: label, data: values, borderColor: color, backgroundColor: color, spanGaps: true,
      pointRadius: measured > 60 ? 0 : 3, tension: 0.2 }, extra || {});
  }

  function drawStats(stats) {
    var counts = stats.counts || {};
    var statusValues = STATUS_ORDER.map(function (s) { return counts[s] || 0; });
    draw("status", { type: "doughnut", data: { labels: STATUS_ORDER, datasets: [{ data: statusValues,
      backgroundColor: STATUS_ORDER.map(function (s) { return COLORS[s]; }) }] } }, count(statusValues));

    var daily = stats.daily || [];
    var dc = daily.map(function (d) { return d.completed; }), df = daily.map(function (d) { return d.failed; });
    draw("daily", { type: "bar", data: { labels: daily.map(function (d) { return d.date; }), datasets: [
      { label: "completed", data: dc, backgroundColor: COLORS.completed },
      { label: "failed", data: df, backgroundColor: COLORS.failed }] } }, count(dc) + count(df));

    var hourly = stats.hourly || [];
    var hc = hourly.map(function (h) { return h.created; });
    draw("hourly", { type: "bar", data: { labels: hourly.map(function (h) { return T.hour(h.hour); }),
      datasets: [
        { label: "created", data: hc, backgroundColor: COLORS.created },
        { label: "completed", data: hourly.map(function (h) { return h.completed; }), backgroundColor: COLORS.completed },
        { label: "failed", data: hourly.map(function (h) { return h.failed; }), backgroundColor: COLORS.failed }] } },
      count(hc));

    var set = function (name, text) { var n = root.querySelector('[data-stat="' + name + '"]'); if (n) n.textContent = text; };
    set("total", String(stats.total));
    set("success_rate", stats.success_rate === null ? "—" : stats.success_rate + " %");
    set("duration", fmtSeconds(stats.duration && stats.duration.mean) + " / " + fmtSeconds(stats.duration && stats.duration.p95));
    set("queue_wait", fmtSeconds(stats.queue_wait && stats.queue_wait.mean) + " / " + fmtSeconds(stats.queue_wait && stats.queue_wait.p95));
    set("throughput", stats.throughput_per_hour + " completed per hour");
    set("today", stats.today.total + " created, " + stats.today.completed + " completed, " + stats.today.failed + " failed");
    var sys = stats.system || {};
    set("system", Math.round(sys.cpu_percent || 0) + " % / " + Math.round(sys.memory_percent || 0) + " % / " + sys.queue_size);
  }

  function drawTypes(body) {
    var rows = body.results || [];
    var totals = rows.map(function (r) { return r.total; });
    draw("types", { data: { labels: rows.map(function (r) { return r.type; }), datasets: [
      { type: "bar", label: "jobs", data: totals, backgroundColor: COLORS.created, yAxisID: "y" },
      { type: "line", label: "success rate %", data: rows.map(function (r) { return r.success_rate; }),
        borderColor: COLORS.completed, backgroundColor: COLORS.completed, yAxisID: "y1" }] },
      options: { scales: { y: { beginAtZero: true, position: "left" },
        y1: { min: 0, max: 100, position: "right", grid: { drawOnChartArea: false } } } } }, count(totals));
  }

  function drawTrend(key, body, label, color) {
    var points = body.points || [];
    var values = points.map(function (p) { return p.value; });
    draw(key, { type: "line", data: { labels: points.map(function (p) { return fmtTime(p.time); }),
      datasets: [line(label, values, color)] }, options: { scales: { y: { beginAtZero: true } } } }, count(values));
  }

  function drawMetrics(body) {
    var points = body.points || [];
    var labels = points.map(function (p) { return fmtTime(p.time); });
    var cpu = points.map(function (p) { return p.cpu_percent; }), mem = points.map(function (p) { return p.memory_percent; });
    draw("system", { type: "line", data: { labels: labels, datasets: [line("CPU %", cpu, COLORS.cpu), line("memory %", mem, COLORS.memory)] },
      options: { scales: { y: { min: 0, max: 100 } } } }, count(cpu) + count(mem));
    var queued = points.map(function (p) { return p.queued_jobs; }), running = points.map(function (p) { return p.running_jobs; });
    // A depth of 0 is still a measurement: count samples, not non-zero values.
    var samples = points.filter(function (p) { return p.queued_jobs !== null && p.queued_jobs !== undefined; }).length;
    draw("queue_depth", { type: "line", data: { labels: labels, datasets: [line("queued", queued, COLORS.queued_jobs),
      line("running", running, COLORS.running_jobs)] }, options: { scales: { y: { beginAtZero: true } } } }, samples);
  }

  function drawUsers(body) {
    var rows = body.results || [];
    var totals = rows.map(function (r) { return r.total; });
    draw("users", { type: "bar", data: { labels: rows.map(function (r) { return r.username || "#" + r.user; }),
      datasets: [{ label: "jobs", data: totals, backgroundColor: COLORS.created }] }, options: { indexAxis: "y" } }, count(totals));
  }

  function drawPeak(body) {
    var rows = body.results || [];
    var counts = rows.map(function (r) { return r.count; });
    // The API counts the hours in the zone asked for (tz=, the viewer's); the title says which.
    zoneNote("peak_hours", body.time_zone);
    draw("peak_hours", { type: "bar", data: { labels: rows.map(function (r) { return (r.hour < 10 ? "0" : "") + r.hour + ":00"; }),
      datasets: [{ label: "jobs created", data: counts, backgroundColor: COLORS.queued }] } }, count(counts));
  }

  function drawErrors(body) {
    var tbody = root.querySelector("[data-errors]");
    tbody.textContent = "";
    (body.groups || []).slice(0, 10).forEach(function (g) {
      var tr = document.createElement("tr");
      [String(g.count), g.message, g.last_seen ? T.format(g.last_seen) : "—"].forEach(function (t) {
        var td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    if (!tbody.children.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = 3; td.textContent = "No failures in this range."; tr.appendChild(td); tbody.appendChild(tr);
    }
  }

  function fail(error) {
    var banner = root.querySelector("[data-analytics-error]");
    banner.hidden = false;
    banner.textContent = (banner.textContent ? banner.textContent + " " : "") + "Could not load " + error.message + ".";
  }

  function load() {
    var interval = INTERVAL[range] || "1h";
    var r = { range: range };
    var tasks = [
      get("stats/", r).then(drawStats),
      get("analytics/types/", r).then(drawTypes),
      get("analytics/trends/", { range: range, metric: "throughput", interval: interval }).then(function (b) { drawTrend("throughput", b, "completed per hour", COLORS.completed); }),
      get("analytics/trends/", { range: range, metric: "duration", interval: interval }).then(function (b) { drawTrend("duration", b, "mean duration (s)", COLORS.line); }),
      get("analytics/trends/", { range: range, metric: "queue_wait", interval: interval }).then(function (b) { drawTrend("queue_wait", b, "mean queue wait (s)", COLORS.queued); }),
      get("metrics/", { range: range, interval: interval }).then(drawMetrics),
      get("analytics/users/", r).then(drawUsers),
      get("analytics/peak-hours/", Object.assign({ tz: T.zoneId() }, r)).then(drawPeak),
      get("analytics/errors/", r).then(drawErrors)
    ];
    tasks.forEach(function (t) { t.catch(fail); });
    return Promise.allSettled(tasks).then(function () { root.dataset.loaded = "true"; });
  }

  function start() {
    root = document.querySelector(".ja-analytics");
    if (!root || !window.Chart) return;
    api = root.dataset.api;
    range = root.dataset.range;
    window.Chart.defaults.color = css("--body-fg", "#333");
    window.Chart.defaults.borderColor = css("--hairline-color", "rgba(0,0,0,0.1)");
    zoneNotes();
    load();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
