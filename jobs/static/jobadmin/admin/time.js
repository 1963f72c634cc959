// One rule for every time a staff page shows: the viewer's own time zone, labelled with it
// ("Dec 7, 2026, 14:05:09 EST"). The server renders each time as <time datetime="ISO">
// (its text a UTC fallback for a page without scripts); this script rewrites every one of
// them, and live code formats new values through the same functions, so a live update never
// changes the format.
(function () {
  "use strict";

  var LOCALE = "en-US";
  var full = new Intl.DateTimeFormat(LOCALE, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short"
  });
  var clock = new Intl.DateTimeFormat(LOCALE, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short"
  });
  var hourOnly = new Intl.DateTimeFormat(LOCALE, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  var dayOnly = new Intl.DateTimeFormat(LOCALE, { month: "short", day: "numeric" });
  var zoneName = new Intl.DateTimeFormat(LOCALE, { timeZoneName: "short" });

  function parse(value) {
    if (value instanceof Date) return value;
    if (value === null || value === undefined || value === "") return null;
    var date = new Date(value);
    return isNaN(date.getTime()) ? null : date;
  }

  // "Dec 7, 2026, 14:05:09 EST" (Intl puts the comma after the year).
  function format(value) {
    var date = parse(value);
    return date ? full.format(date) : "—";
  }

  // "14:05:09 EST": for what happens today on a live page (the feed, the ETA).
  function formatClock(value) {
    var date = parse(value);
    return date ? clock.format(date) : "—";
  }

  // The zone's short name now ("EST"), for chart axes and headings.
  function zone(value) {
    var parts = zoneName.formatToParts(parse(value) || new Date());
    for (var i = 0; i < parts.length; i++) if (parts[i].type === "timeZoneName") return parts[i].value;
    return "";
  }

  // The IANA name (America/New_York), for the API's tz= parameter.
  function zoneId() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { return "UTC"; }
  }

  // <time datetime=…> elements under root: their text in the viewer's zone; data-format="clock"
  // for a time of day only. The ISO value stays the element's title for copying.
  function localise(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (node) {
      var iso = node.getAttribute("datetime");
      var text = node.dataset.format === "clock" ? formatClock(iso) : format(iso);
      if (text !== "—" && node.textContent !== text) node.textContent = text;
      node.title = iso;
      node.dataset.localised = "1";
    });
  }

  // A <time> element for live code: the same markup and text as a server-rendered one.
  function element(value, kind) {
    var node = document.createElement("time");
    var date = parse(value);
    if (date) node.setAttribute("datetime", date.toISOString());
    if (kind === "clock") node.dataset.format = "clock";
    node.textContent = kind === "clock" ? formatClock(date) : format(date);
    if (date) node.title = date.toISOString();
    node.dataset.localised = "1";
    return node;
  }

  window.JobAdminTime = {
    format: format, formatClock: formatClock, zone: zone, zoneId: zoneId, localise: localise, element: element,
    hour: function (value) { var d = parse(value); return d ? hourOnly.format(d) : "—"; },
    day: function (value) { var d = parse(value); return d ? dayOnly.format(d) : "—"; }
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { localise(); });
  else localise();
})();
