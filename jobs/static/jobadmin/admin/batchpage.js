// The batch page follows its batch live (channel batch:<id>): each member's job-update repaints
// that member's row, and carries the batch's aggregate (counts, progress, ETA, status; see
// docs/websocket.md), which repaints the summary. The newest event wins: a late or replayed
// message never overwrites a newer state.
(function () {
  "use strict";

  function paintBadge(cell, status) {
    var badge = cell && cell.querySelector(".ja-badge");
    if (!badge) return;
    badge.className = "ja-badge ja-status-" + status;
    badge.textContent = status.charAt(0).toUpperCase() + status.slice(1);
  }

  function paintBar(bar, value) {
    if (!bar) return;
    var progress = Math.max(0, Math.min(100, Math.round(value || 0)));
    bar.querySelector(".ja-progress-fill").style.width = progress + "%";
    bar.querySelector(".ja-progress-text").textContent = progress + "%";
    bar.setAttribute("aria-valuenow", String(progress));
  }

  function start() {
    var root = document.querySelector(".ja-batchpage");
    var indicator = root && root.querySelector("[data-live-indicator]");
    if (!root || !indicator || !window.JobAdminConnection) return;
    var id = parseInt(root.dataset.batchId, 10);
    var field = function (name) { return root.querySelector('[data-field="' + name + '"]'); };
    var newestBatch = 0;  // event_id of the aggregate painted
    var newestMember = {};  // member id -> event_id of the snapshot painted
    var time = window.JobAdminTime;

    function paintMember(job, eventId) {
      var row = root.querySelector('[data-member-id="' + job.id + '"]');
      if (!row || (newestMember[job.id] || 0) >= eventId) return;
      newestMember[job.id] = eventId;
      paintBadge(row.querySelector('[data-field="status"]'), job.status);
      paintBar(row.querySelector("[data-job-progress]"), job.progress);
      if (job.updated_at) row.querySelector('[data-field="updated"]').replaceChildren(time.element(job.updated_at));
    }

    function paintBatch(batch, eventId) {
      if (eventId <= newestBatch) return;
      newestBatch = eventId;
      paintBadge(field("batch-status"), batch.status);
      paintBar(root.querySelector("[data-batch-progress]"), batch.progress);
      Object.keys(batch.counts).forEach(function (status) {
        var count = root.querySelector('[data-count="' + status + '"]');
        if (count) count.textContent = String(batch.counts[status]);
      });
      field("total").textContent = String(batch.total);
      // The same <time> markup and format as the server's (jobadmin/admin/time.js).
      if (batch.eta) field("eta").replaceChildren(time.element(batch.eta, "clock")); else field("eta").textContent = "—";
      if (batch.finished_at) field("finished").replaceChildren(time.element(batch.finished_at));
      else field("finished").textContent = "—";
      // The actions the aggregate allows (the server refuses the others with a message anyway).
      var allowed = { cancel: batch.status === "running", retry: batch.counts.failed > 0 };
      root.querySelectorAll("[data-batch-action]").forEach(function (form) {
        form.hidden = !allowed[form.dataset.batchAction];
      });
    }

    var connection = new window.JobAdminConnection({
      channels: ["batch:" + id],
      since: parseInt(root.dataset.since, 10) || 0,
      onMessage: function (message) {
        if (message.type !== "job-update" || !message.job || message.job.batch !== id) return;
        paintMember(message.job, message.event_id);
        if (message.batch) paintBatch(message.batch, message.event_id);
      },
      onState: function (state) { window.JobAdminConnection.paintIndicator(indicator, state); }
    });
    connection.connect();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
