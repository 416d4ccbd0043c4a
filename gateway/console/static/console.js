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
