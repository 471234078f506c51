// fraudwatch console: small progressive enhancements. No inline scripts anywhere (CSP).
(function () {
  "use strict";

  function ago(iso) {
    var seconds = Math.floor((Date.now() - Date.parse(iso)) / 1000);
    if (isNaN(seconds)) return null;
    if (seconds < 0) return "just now";
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return Math.floor(seconds / 86400) + " d ago";
  }

  // Keep the "age" column current between server renders.
  function refreshAges(root) {
    var nodes = (root || document).querySelectorAll("time.age[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var text = ago(nodes[i].getAttribute("datetime"));
      if (text) nodes[i].textContent = text;
    }
  }

  // A click anywhere on a queue row opens the alert (links inside the row keep their target).
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element) || target.closest("a, button, input, select, textarea")) return;
    var row = target.closest("tr[data-href]");
    if (row && window.getSelection && String(window.getSelection()) === "") {
      window.location.assign(row.getAttribute("data-href"));
    }
  });

  document.addEventListener("DOMContentLoaded", function () { refreshAges(); });
  document.addEventListener("htmx:afterSettle", function () { refreshAges(); });
  window.setInterval(refreshAges, 15000);
})();
