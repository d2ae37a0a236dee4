// Live reload: the server pushes a version token over Server-Sent Events whenever a post, a
// template or config.toml changes; a token other than the one this page was built with means
// the page is stale, so reload it (the query string keeps the reader and colour scheme).
(function () {
  "use strict";
  var token = document.body.getAttribute("data-token");
  var live = document.getElementById("live");
  var text = document.getElementById("live-text");
  if (!window.EventSource || !live) return;
  var source = new EventSource("/events");
  source.addEventListener("version", function (event) {
    if (event.data && event.data !== token) {
      text.textContent = "reloading…";
      source.close();
      window.location.reload();
      return;
    }
    live.className = "live on";
    text.textContent = "live";
  });
  source.onerror = function () {
    live.className = "live off";
    text.textContent = "reconnecting…";
  };
})();
