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

  // axis: the heading of the labels' column in the chart's data table (its text alternative).
  function draw(key, config, points, axis) {
    var figure = root.querySelector('[data-chart="' + key + '"]');
    if (!figure) return;
    var canvas = figure.querySelector("canvas");
    var empty = figure.querySelector("[data-chart-empty]");
    if (charts[key]) charts[key].destroy();
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: "bottom" } } }, config.options || {});
    charts[key] = new window.Chart(canvas, config);
    dataTable(figure, config.data, axis);
    figure.dataset.points = String(points);
    figure.dataset.drawn = "true";
    empty.hidden = points > 0;
  }

  function cellText(value) {
    if (value === null || value === undefined) return "—";
    return typeof value === "number" ? String(Math.round(value * 1000) / 1000) : String(value);
  }

  // The chart's figures as a table: a row per label, a column per series, from the very data the
  // chart was given, so the two never disagree; redrawn with the chart.
  function dataTable(figure, data, axis) {
    var table = document.createElement("table");
    var caption = document.createElement("caption");
    caption.textContent = figure.querySelector("h2").textContent.trim();
    caption.className = "ja-visually-hidden";
    table.appendChild(caption);
    var head = table.createTHead().insertRow();
    [axis].concat(data.datasets.map(function (d) { return d.label; })).forEach(function (text) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = text;
      head.appendChild(th);
    });
    var body = table.createTBody();
    data.labels.forEach(function (label, i) {
      var tr = body.insertRow();
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      tr.appendChild(th);
      data.datasets.forEach(function (d) { tr.insertCell().textContent = cellText(d.data[i]); });
    });
    var holder = figure.querySelector("[data-chart-data]");
    holder.querySelector("summary").textContent = "Data table (" + data.labels.length + " row" + (data.labels.length === 1 ? "" : "s") + ")";
    holder.querySelector(".ja-table-scroll").replaceChildren(table);
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
    draw("status", { type: "doughnut", data: { labels: STATUS_ORDER, datasets: [{ label: "jobs", data: statusValues,
      backgroundColor: STATUS_ORDER.map(function (s) { return COLORS[s]; }) }] } }, count(statusValues), "Status");

    var daily = stats.daily || [];
    var dc = daily.map(function (d) { return d.completed; }), df = daily.map(function (d) { return d.failed; });
    draw("daily", { type: "bar", data: { labels: daily.map(function (d) { return d.date; }), datasets: [
      { label: "completed", data: dc, backgroundColor: COLORS.completed },
      { label: "failed", data: df, backgroundColor: COLORS.failed }] } }, count(dc) + count(df), "Day");

    var hourly = stats.hourly || [];
    var hc = hourly.map(function (h) { return h.created; });
    draw("hourly", { type: "bar", data: { labels: hourly.map(function (h) { return T.hour(h.hour); }),
      datasets: [
        { label: "created", data: hc, backgroundColor: COLORS.created },
        { label: "completed", data: hourly.map(function (h) { return h.completed; }), backgroundColor: COLORS.completed },
        { label: "failed", data: hourly.map(function (h) { return h.failed; }), backgroundColor: COLORS.failed }] } },
      count(hc), "Hour");

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
        y1: { min: 0, max: 100, position: "right", grid: { drawOnChartArea: false } } } } }, count(totals), "Type");
    drawHealth(rows);
  }

  // --- health per job type: a sortable table (worst grade first until a heading is chosen) -------
  var GRADE_RANK = { poor: 0, fair: 1, good: 2, excellent: 3 };
  var healthRows = [], healthSort = { key: "grade", dir: 1 };

  function sortValue(row, key) {
    if (key === "grade") return row.grade ? GRADE_RANK[row.grade] : null;
    return row[key];
  }

  // Ungraded and unmeasured rows go last either way; ties: more runs first, then by name.
  function compareRows(a, b) {
    var x = sortValue(a, healthSort.key), y = sortValue(b, healthSort.key);
    if (x !== y) {
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * healthSort.dir;
    }
    return b.total - a.total || (a.type < b.type ? -1 : a.type > b.type ? 1 : 0);
  }

  function fmtNumber(v, digits) { return v === null || v === undefined ? "—" : String(Math.round(v * Math.pow(10, digits)) / Math.pow(10, digits)); }

  var HEALTH_CELLS = {
    type: function (r) { return r.type; },
    grade: function (r) { return el("span", "ja-badge ja-grade-" + (r.grade || "none"), r.grade || "ungraded"); },
    total: function (r) { return String(r.total); },
    success_rate: function (r) { return r.success_rate === null ? "—" : r.success_rate + " %"; },
    duration_mean: function (r) { return fmtSeconds(r.duration_mean); },
    duration_p95: function (r) { return fmtSeconds(r.duration_p95); },
    throughput_per_hour: function (r) { return fmtNumber(r.throughput_per_hour, 2); },
    items_per_second: function (r) { return fmtNumber(r.items_per_second, 1); }
  };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function lastFailureCell(failure) {
    var td = document.createElement("td");
    if (!failure) { td.textContent = "—"; return td; }
    var link = el("a", "", failure.error || "(no message)");
    link.href = root.dataset.jobUrl + failure.id + "/change/";
    link.title = failure.error;
    td.appendChild(link);
    td.appendChild(el("span", "ja-cell-line ja-help")).appendChild(T.element(failure.finished_at));
    return td;
  }

  function paintHealth() {
    var table = root.querySelector("[data-type-health]");
    var columns = Array.prototype.map.call(table.querySelectorAll("thead th[data-sort-key]"), function (th) {
      if (th.dataset.sortKey === healthSort.key) th.setAttribute("aria-sort", healthSort.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
      return th.dataset.sortKey;
    });
    var tbody = table.querySelector("[data-type-health-body]");
    var fragment = document.createDocumentFragment();
    healthRows.slice().sort(compareRows).forEach(function (row) {
      var tr = document.createElement("tr");
      tr.dataset.type = row.type;
      tr.dataset.grade = row.grade || "";
      columns.forEach(function (key) {
        var cell = document.createElement(key === "type" ? "th" : "td");
        if (key === "type") cell.scope = "row";
        var value = HEALTH_CELLS[key](row);
        if (typeof value === "string") cell.textContent = value; else cell.appendChild(value);
        tr.appendChild(cell);
      });
      tr.appendChild(lastFailureCell(row.last_failure));
      fragment.appendChild(tr);
    });
    if (!healthRows.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = columns.length + 1; td.textContent = "No jobs in this range."; tr.appendChild(td); fragment.appendChild(tr);
    }
    tbody.replaceChildren(fragment);
  }

  function drawHealth(rows) {
    healthRows = rows;
    paintHealth();
  }

  function setupHealthSort() {
    root.querySelectorAll("[data-type-health] th[data-sort-key] button").forEach(function (button) {
      button.addEventListener("click", function () {
        var key = button.parentNode.dataset.sortKey;
        // A new column starts with what matters first: names A–Z, the worst grade, the biggest figure.
        if (key === healthSort.key) healthSort.dir = -healthSort.dir;
        else healthSort = { key: key, dir: key === "type" || key === "grade" ? 1 : -1 };
        paintHealth();
      });
    });
  }

  function drawTrend(key, body, label, color) {
    var points = body.points || [];
    var values = points.map(function (p) { return p.value; });
    draw(key, { type: "line", data: { labels: points.map(function (p) { return fmtTime(p.time); }),
      datasets: [line(label, values, color)] }, options: { scales: { y: { beginAtZero: true } } } }, count(values), "Time");
  }

  function drawMetrics(body) {
    var points = body.points || [];
    var labels = points.map(function (p) { return fmtTime(p.time); });
    var cpu = points.map(function (p) { return p.cpu_percent; }), mem = points.map(function (p) { return p.memory_percent; });
    draw("system", { type: "line", data: { labels: labels, datasets: [line("CPU %", cpu, COLORS.cpu), line("memory %", mem, COLORS.memory)] },
      options: { scales: { y: { min: 0, max: 100 } } } }, count(cpu) + count(mem), "Time");
    var queued = points.map(function (p) { return p.queued_jobs; }), running = points.map(function (p) { return p.running_jobs; });
    // A depth of 0 is still a measurement: count samples, not non-zero values.
    var samples = points.filter(function (p) { return p.queued_jobs !== null && p.queued_jobs !== undefined; }).length;
    draw("queue_depth", { type: "line", data: { labels: labels, datasets: [line("queued", queued, COLORS.queued_jobs),
      line("running", running, COLORS.running_jobs)] }, options: { scales: { y: { beginAtZero: true } } } }, samples, "Time");
  }

  function drawUsers(body) {
    var rows = body.results || [];
    var totals = rows.map(function (r) { return r.total; });
    draw("users", { type: "bar", data: { labels: rows.map(function (r) { return r.username || "#" + r.user; }),
      datasets: [{ label: "jobs", data: totals, backgroundColor: COLORS.created }] }, options: { indexAxis: "y" } }, count(totals), "User");
  }

  function drawPeak(body) {
    var rows = body.results || [];
    var counts = rows.map(function (r) { return r.count; });
    // The API counts the hours in the zone asked for (tz=, the viewer's); the title says which.
    zoneNote("peak_hours", body.time_zone);
    draw("peak_hours", { type: "bar", data: { labels: rows.map(function (r) { return (r.hour < 10 ? "0" : "") + r.hour + ":00"; }),
      datasets: [{ label: "jobs created", data: counts, backgroundColor: COLORS.queued }] } }, count(counts), "Hour of the day");
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
    setupHealthSort();
    load();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
