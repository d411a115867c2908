// hosthog's web calendar works without this file; it only helps:
// - the timeline opens in the browser's own time zone when no zone is asked;
// - the booking form keeps its end after its start as the start moves.
"use strict";
(function () {
  var here = new URL(window.location.href);
  if (here.pathname === "/web/" && !here.searchParams.has("tz")) {
    try {
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone && zone !== "UTC" && zone !== "Etc/UTC") {
        here.searchParams.set("tz", zone);
        window.location.replace(here.toString());
        return;
      }
    } catch (e) { /* no Intl: stay in UTC */ }
  }
  var start = document.getElementById("start");
  var end = document.getElementById("end");
  if (start && end) {
    start.addEventListener("change", function () {
      if (end.value && end.value <= start.value) {
        var t = new Date(start.value);
        t.setHours(t.getHours() + 2);
        var pad = function (n) { return (n < 10 ? "0" : "") + n; };
        end.value = t.getFullYear() + "-" + pad(t.getMonth() + 1) + "-" + pad(t.getDate()) +
          "T" + pad(t.getHours()) + ":" + pad(t.getMinutes());
      }
    });
  }
})();
