// dpgate console: progressive enhancement only; every page works without it.
(function () {
  "use strict";
  var sql = document.getElementById("sql");
  var preview = document.getElementById("preview");
  if (sql && preview) {
    // Ctrl/Cmd+Enter previews (free); running stays a deliberate click.
    sql.addEventListener("keydown", function (e) {
      if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); preview.click(); }
    });
  }
})();
// A training job's page follows the job: its status JSON every 1.5 s while it is queued or running,
// then one reload, which shows the finished job (its model, its metrics) as the server renders it.
(function () {
  "use strict";
  var job = document.getElementById("job-live");
  if (!job || !window.fetch) { return; }
  var active = function (s) { return s === "queued" || s === "running"; };
  if (!active(job.getAttribute("data-status"))) { return; }
  var url = job.getAttribute("data-status-url");
  var bar = document.getElementById("job-progress");
  var label = document.getElementById("job-status");
  var percent = document.getElementById("job-percent");
  var poll = function () {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 429) {  // over the rate limit: wait as told
          setTimeout(poll, 1000 * (parseFloat(r.headers.get("Retry-After")) || 5));
          return null;
        }
        // signed out (the sign-in page) or gone: stop; the page keeps the last state it showed
        return r.ok && (r.headers.get("Content-Type") || "").indexOf("json") >= 0 ? r.json() : null;
      })
      .then(function (s) {
        if (!s) { return; }
        bar.value = s.progress;
        percent.textContent = Math.floor(100 * s.progress) + "%";
        label.textContent = s.status;
        label.className = "status status-" + s.status;
        if (active(s.status)) { setTimeout(poll, 1500); } else { window.location.reload(); }
      })
      .catch(function () { setTimeout(poll, 5000); });
  };
  setTimeout(poll, 1500);
})();
