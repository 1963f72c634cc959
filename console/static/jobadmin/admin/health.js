// The health badge: GET /api/health/ now and every 15 s; shows healthy/warning/critical.
(function () {
  "use strict";
  function paint(badge, status, reasons) {
    badge.textContent = "Health: " + status;
    badge.dataset.health = status;
    badge.className = badge.className.replace(/\bja-health-\S+/g, "").trim() + " ja-health-" + status;
    badge.title = reasons.join("\n");
  }
  function check(badge) {
    fetch(badge.dataset.healthUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      // 503 still carries the verdict (critical): read the body whatever the status code.
      .then(function (r) { return r.json(); })
      .then(function (body) {
        var reasons = (body.reasons || []).map(String);
        paint(badge, body.status || "unknown", reasons);
      })
      .catch(function () { paint(badge, "unknown", ["The health check could not be reached."]); });
  }
  function start() {
    document.querySelectorAll("[data-health-badge]").forEach(function (badge) {
      check(badge);
      setInterval(function () { check(badge); }, 15000);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
  window.JobAdminHealth = { check: check };
})();
