// Painting a job's status badge and progress bar from a job-update, the same markup the server
// renders (jobs.admin.job_page.status_badge, progress_bar): shared by the job page and the list.
(function () {
  "use strict";

  var labels = null;

  // The status labels the server rendered (#ja-status-labels, from jobs.models.JobStatus).
  function label(status) {
    if (labels === null) {
      var node = document.getElementById("ja-status-labels");
      labels = node ? JSON.parse(node.textContent) : {};
    }
    return labels[status] || status;
  }

  function badge(el, status) {
    if (!el) return;
    el.className = "ja-badge ja-status-" + status;
    el.textContent = label(status);
  }

  function progress(bar, value) {
    if (!bar) return;
    var percent = Math.max(0, Math.min(100, Math.round(value || 0)));
    var fill = bar.querySelector(".ja-progress-fill");
    var text = bar.querySelector(".ja-progress-text");
    if (fill) {
      fill.classList.add("ja-live");
      fill.style.width = "100%";
      fill.style.transform = "scaleX(" + percent / 100 + ")";
    }
    if (text) text.textContent = percent + "%";
    bar.setAttribute("aria-valuenow", String(percent));
  }

  window.JobAdminPaint = { badge: badge, progress: progress, label: label };
})();
