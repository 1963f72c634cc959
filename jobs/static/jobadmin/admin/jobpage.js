// The job page follows its job live (channel job:<id>): progress, items, ETA and status.
// When the job finishes the page reloads once to show the result, error and timeline.
// Status labels, the finished statuses and the actions a state allows come from the
// server (#ja-job-states, rendered from jobs.models.TRANSITIONS): no copy of the rules here.
(function () {
  "use strict";

  // The actions of `transitions` that a job snapshot allows: the status has a cell, the
  // cell's required flag is set and none of its refusing flags is.
  function allowedActions(transitions, job) {
    return Object.keys(transitions).filter(function (action) {
      var cell = transitions[action][job.status];
      if (!cell || (cell.requires && !job[cell.requires])) return false;
      return !cell.refused_if.some(function (flag) { return job[flag]; });
    });
  }

  function start() {
    var root = document.querySelector(".ja-jobpage");
    var indicator = root && root.querySelector("[data-live-indicator]");
    if (!root || !indicator || !window.JobAdminConnection) return;
    var states = JSON.parse(document.getElementById("ja-job-states").textContent);
    var actionsGroup = root.querySelector("[data-job-actions]");
    var id = root.dataset.jobId;
    var notResumable = root.dataset.notResumable === "true";
    var bar = root.querySelector(".ja-live-progress [data-job-progress]");
    var fill = bar && bar.querySelector(".ja-progress-fill");
    var text = bar && bar.querySelector(".ja-progress-text");
    var field = function (name) { return root.querySelector('[data-field="' + name + '"]'); };
    var latest = null;
    var newestEvent = 0;  // event_id of the snapshot in `latest`
    var frame = false;

    function paint() {
      frame = false;
      var job = latest;
      var progress = Math.max(0, Math.min(100, Math.round(job.progress || 0)));
      if (fill) {
        fill.classList.add("ja-live");
        fill.style.width = "100%";
        fill.style.transform = "scaleX(" + progress / 100 + ")";
      }
      if (text) text.textContent = progress + "%";
      if (bar) bar.setAttribute("aria-valuenow", String(progress));
      field("processed").textContent = String(job.processed_items);
      field("total").textContent = job.total_items === null ? "?" : String(job.total_items);
      field("errors").textContent = String(job.error_count);
      // The same <time> markup and format as the server's (jobadmin/admin/time.js).
      if (job.eta) field("eta").replaceChildren(window.JobAdminTime.element(job.eta, "clock"));
      else field("eta").textContent = "—";
      var badge = field("status").querySelector(".ja-badge");
      if (badge) {
        badge.className = "ja-badge ja-status-" + job.status;
        badge.textContent = states.labels[job.status] || job.status;
      }
      if (actionsGroup) {
        // What the snapshot does not carry: whether the job's type can continue (pause).
        var allowed = allowedActions(states.transitions, Object.assign({ not_resumable: notResumable }, job));
        actionsGroup.querySelectorAll("[data-job-action]").forEach(function (form) {
          form.hidden = allowed.indexOf(form.dataset.jobAction) < 0;
        });
        actionsGroup.hidden = allowed.length === 0;
      }
      root.querySelectorAll("[data-step-index]").forEach(function (li) {
        var i = parseInt(li.dataset.stepIndex, 10);
        var state = job.status === "completed" || i < job.current_step ? "done" : i === job.current_step ? "current" : "todo";
        li.className = "ja-step ja-step-" + state;
      });
      if (states.finished.indexOf(job.status) >= 0) {
        connection.close();
        setTimeout(function () { window.location.reload(); }, 800);
      }
    }

    var connection = new window.JobAdminConnection({
      path: root.dataset.wsPath,
      channels: ["job:" + id],
      onMessage: function (message) {
        if (message.type !== "job-update" || !message.job || message.job.id !== id) return;
        // Events can arrive late and out of order (a catch-up after a layer outage): an older
        // snapshot never overwrites a newer one.
        if (message.event_id <= newestEvent) return;
        newestEvent = message.event_id;
        latest = message.job;
        if (!frame) { frame = true; requestAnimationFrame(paint); }
      },
      onState: function (state) { window.JobAdminConnection.paintIndicator(indicator, state); }
    });
    connection.connect();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
