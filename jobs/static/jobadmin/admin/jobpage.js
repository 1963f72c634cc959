// The job page follows its job live (channel job:<id>, from the page's own event id, so what
// happened between rendering and subscribing is replayed — a pause that took effect meanwhile
// is not missed). Each job-update paints at once what it carries: status, progress, items, ETA
// and the actions its state allows (`actions`, from the server's transition table: no copy of
// the rules here). After any update that is more than progress, and every few seconds while the
// job runs (a heartbeat writes no event), the page asks the server for the rest (data-live-url,
// jobs.admin.job_page.live_state): its sections as the server renders them — facts, notices
// (late, pending requests, where it stopped), steps, result, error — and the timeline and log
// rows since the last one it has.
(function () {
  "use strict";

  function start() {
    var root = document.querySelector(".ja-jobpage");
    var indicator = root && root.querySelector("[data-live-indicator]");
    if (!root || !indicator || !window.JobAdminConnection) return;
    var paint = window.JobAdminPaint;
    var id = root.dataset.jobId;
    var actionsGroup = root.querySelector("[data-job-actions]");
    var field = function (name) { return root.querySelector('[data-field="' + name + '"]'); };
    var since = Number(root.dataset.since) || 0;  // the job's newest event when the page was rendered
    var latest = null;      // the newest job snapshot
    var newestEvent = since;  // its event_id: nothing older than the rendered page is painted
    var after = since;      // the newest timeline / log event shown
    var late = !!root.querySelector("[data-late]");
    var frame = false;
    var fetching = false;
    var again = false;
    var timer = null;

    function showActions(actions) {
      if (!actionsGroup || !Array.isArray(actions)) return;
      actionsGroup.querySelectorAll("[data-job-action]").forEach(function (form) {
        form.hidden = actions.indexOf(form.dataset.jobAction) < 0;
      });
      actionsGroup.hidden = actions.length === 0;
    }

    function paintJob() {
      frame = false;
      var job = latest;
      paint.badge(field("status").querySelector("[data-job-status]"), job.status);
      paint.progress(root.querySelector(".ja-live-progress [role=progressbar]"), job.progress);
      field("processed").textContent = String(job.processed_items);
      field("total").textContent = job.total_items === null ? "?" : String(job.total_items);
      field("errors").textContent = String(job.error_count);
      // The engine keeps an ETA only while the job runs; a late job's ETA is not believed.
      if (job.eta && !late) field("eta").replaceChildren(window.JobAdminTime.element(job.eta, "clock"));
      else field("eta").textContent = late && job.status === "running" ? "— (late)" : "—";
      showActions(job.actions);
    }

    function schedulePaint() {
      if (latest && !frame) { frame = true; requestAnimationFrame(paintJob); }
    }

    function append(container, html) {
      if (!container || !html) return;
      var template = document.createElement("template");
      template.innerHTML = html;
      Array.from(template.content.children).forEach(function (row) {
        var eventId = Number(row.dataset.eventId);
        if (container.querySelector('[data-event-id="' + eventId + '"]')) return;  // already shown
        row.classList.add("ja-fresh");
        container.appendChild(row);
      });
      window.JobAdminTime.localise(container);
    }

    function apply(body) {
      Object.keys(body.sections).forEach(function (name) {
        var section = root.querySelector('[data-section="' + name + '"]');
        if (section && section.innerHTML !== body.sections[name]) {
          section.innerHTML = body.sections[name];
          window.JobAdminTime.localise(section);
        }
      });
      append(root.querySelector("[data-timeline]"), body.timeline);
      var log = root.querySelector("[data-log]");
      append(log, body.log);
      if (log && body.log.trim()) {
        root.querySelector("[data-log-empty]").hidden = true;
        log.scrollTop = log.scrollHeight;
      }
      after = Math.max(after, body.after);
      late = body.late;
      // The sections were read after event body.event_id: a job-update newer than that wins; else
      // these are the newest word (a job-update that never came, or has not come yet).
      if (newestEvent > body.event_id) schedulePaint();
      else {
        showActions(body.actions);
        if (late && body.status === "running") field("eta").textContent = "— (late)";
      }
      clearTimeout(timer);
      if (body.check_again) timer = setTimeout(refresh, body.check_again * 1000);
    }

    // One request at a time; asked again meanwhile, it runs once more when the first is back.
    function refresh() {
      if (fetching) { again = true; return; }
      fetching = true;
      fetch(root.dataset.liveUrl + "?after=" + after, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) { if (body) apply(body); })
        .catch(function () { /* the connection indicator tells; the next update asks again */ })
        .then(function () {
          fetching = false;
          if (again) { again = false; refresh(); }
        });
    }

    var wasLive = false;
    var connection = new window.JobAdminConnection({
      path: root.dataset.wsPath,
      channels: ["job:" + id],
      since: since,
      onMessage: function (message) {
        if (message.type !== "job-update" || !message.job || message.job.id !== id) return;
        // Events can arrive late and out of order (a catch-up after a layer outage): an older
        // snapshot never overwrites a newer one.
        if (message.event_id <= newestEvent) return;
        newestEvent = message.event_id;
        latest = message.job;
        schedulePaint();
        if (message.kind !== "progress") refresh();
      },
      onState: function (state) {
        window.JobAdminConnection.paintIndicator(indicator, state);
        // Back after a gap: the replay brings the events, this the heartbeat and the sections.
        if (state === "live" && !wasLive) refresh();
        wasLive = state === "live";
      }
    });
    connection.connect();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
