// The schedule form: the next five runs of the timing being typed, from the API's preview
// (GET <preview-url>?cron=&timezone=&interval_minutes=), or its error, before anything is saved.
// The admin puts form media in the page's head: start once the form is there.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var list = document.querySelector(".ja-next-runs");
  if (!list || !list.dataset.previewUrl) return;
  var inputs = document.querySelectorAll("[data-schedule-timing]");
  var timer = null;

  function value(name) {
    var input = document.querySelector('[data-schedule-timing="' + name + '"]');
    return input ? input.value.trim() : "";
  }

  function show(lines, isError) {
    list.replaceChildren();
    lines.forEach(function (line) {
      var item = document.createElement("li");
      item.textContent = line;
      if (isError) item.className = "errorlist";
      list.appendChild(item);
    });
  }

  function label(iso, zone) {
    var due = new Date(iso);
    var local = new Intl.DateTimeFormat(undefined, {
      weekday: "short", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", timeZone: zone, timeZoneName: "short"
    }).format(due);
    return local + " (" + due.toISOString().slice(11, 16) + " UTC)";
  }

  function preview() {
    var query = new URLSearchParams({ cron: value("cron"), timezone: value("timezone") || "UTC" });
    if (value("interval_minutes")) query.set("interval_minutes", value("interval_minutes"));
    fetch(list.dataset.previewUrl + "?" + query.toString(), { credentials: "same-origin" })
      .then(function (response) { return response.json().then(function (body) { return [response.ok, body]; }); })
      .then(function (answer) {
        var ok = answer[0], body = answer[1];
        if (ok) {
          var zone = value("timezone") || "UTC";
          try { new Intl.DateTimeFormat(undefined, { timeZone: zone }); } catch (e) { zone = "UTC"; }
          show(body.next_runs.map(function (iso) { return label(iso, zone); }), false);
        } else {
          show(Object.keys(body).map(function (field) { return field + ": " + [].concat(body[field]).join(" "); }), true);
        }
      })
      .catch(function () { show(["The preview is not available."], true); });
  }

  inputs.forEach(function (input) {
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(preview, 300);
    });
  });
  preview();
});
