// The job list follows the jobs of its page live (channel `all`, from the list's own event id):
// each row's status badge and progress bar are painted from its job's job-updates, without a
// reload. A row keeps its place until the next load, even once the filters would leave it out
// (its badge shows why); jobs queued since appear on the next load.
(function () {
  "use strict";

  function start() {
    var root = document.querySelector("[data-joblist-live]");
    var indicator = root && root.querySelector("[data-live-indicator]");
    if (!root || !indicator || !window.JobAdminConnection) return;
    var rows = {};
    document.querySelectorAll("#result_list [data-job-id]").forEach(function (cell) {
      rows[cell.dataset.jobId] = { row: cell.closest("tr"), newest: 0 };
    });
    if (!Object.keys(rows).length) return;
    var connection = new window.JobAdminConnection({
      path: root.dataset.wsPath,
      channels: ["all"],
      since: Number(root.dataset.since) || 0,
      onMessage: function (message) {
        if (message.type !== "job-update" || !message.job) return;
        var entry = rows[message.job.id];
        if (!entry || message.event_id <= entry.newest) return;  // not on this page, or older
        entry.newest = message.event_id;
        window.JobAdminPaint.badge(entry.row.querySelector("[data-job-status]"), message.job.status);
        window.JobAdminPaint.progress(entry.row.querySelector("[data-job-progress]"), message.job.progress);
      },
      onState: function (state) { window.JobAdminConnection.paintIndicator(indicator, state); }
    });
    connection.connect();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
