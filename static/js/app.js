/* BTC Watcher page behaviour: toasts, relative times, the user menu, request errors and the
 * live-connection dot. Plain script, no build step; htmx does everything else. */
(function () {
  "use strict";

  var toasts = function () { return document.getElementById("toasts"); };

  /* Toasts fade by CSS; remove them once faded or when dismissed. */
  function showToast(message, category) {
    var box = toasts();
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast toast-" + (category || "info");
    el.setAttribute("role", category === "error" ? "alert" : "status");
    var icon = document.createElement("span");
    icon.className = "toast-icon";
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = { success: "✓", warning: "!", error: "✕" }[category] || "i";
    var text = document.createElement("div");
    text.className = "toast-message";
    text.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    el.append(icon, text, close);
    box.prepend(el);
  }
  window.btcWatcher = { toast: showToast };

  document.addEventListener("animationend", function (event) {
    if (event.animationName === "toast-out") event.target.remove();
  });
  document.addEventListener("click", function (event) {
    var close = event.target.closest(".toast-close");
    if (close) close.closest(".toast").remove();

    /* A click outside an open user menu closes it. */
    document.querySelectorAll("details.user-menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.user-menu[open]").forEach(function (menu) {
      menu.removeAttribute("open");
    });
  });

  /* On a phone the nav links scroll sideways: bring the current page's link into view. */
  document.addEventListener("DOMContentLoaded", function () {
    var links = document.querySelector(".nav-links");
    var active = links && links.querySelector("a.active");
    if (!active || links.scrollWidth <= links.clientWidth) return;
    var offset = active.getBoundingClientRect().left - links.getBoundingClientRect().left;
    links.scrollLeft += offset - (links.clientWidth - active.offsetWidth) / 2;
  });

  /* <time class="time-ago" datetime="…"> reads "3 min ago"; the server text stays as the title. */
  function relative(seconds) {
    var future = seconds < 0;
    var s = Math.abs(seconds);
    var text;
    if (s < 10) return "just now";
    if (s < 60) text = Math.floor(s) + " s";
    else if (s < 3600) text = Math.floor(s / 60) + " min";
    else if (s < 86400) text = Math.floor(s / 3600) + " h";
    else if (s < 30 * 86400) text = Math.floor(s / 86400) + " d";
    else return null;
    return future ? "in " + text : text + " ago";
  }
  function refreshTimes(root) {
    (root || document).querySelectorAll("time.time-ago[datetime]").forEach(function (el) {
      var when = Date.parse(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      if (!el.dataset.absolute) el.dataset.absolute = el.textContent;
      el.textContent = relative((Date.now() - when) / 1000) || el.dataset.absolute;
    });
  }
  document.addEventListener("DOMContentLoaded", function () { refreshTimes(document); });
  document.addEventListener("htmx:load", function (event) { refreshTimes(event.target); });
  setInterval(function () { refreshTimes(document); }, 30000);

  /* A failed htmx request says so, unless the response already carried its own toast. */
  function errorMessage(xhr) {
    var body = (xhr.responseText || "").trim();
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("application/json") === 0) {
      try {
        var data = JSON.parse(body);
        body = data.message || data.error || data.detail || "";
      } catch (ignored) { body = ""; }
    } else if (type.indexOf("text/plain") !== 0 || body.length > 300) {
      body = "";
    }
    var reason = {
      400: "bad request", 401: "signed out", 403: "forbidden", 404: "not found",
      409: "conflict", 413: "too large", 429: "too many requests", 500: "server error",
      502: "bad gateway", 503: "unavailable", 504: "timed out"
    }[xhr.status];
    return "Request failed (" + xhr.status + (reason ? " " + reason : "") + ")"
      + (body ? ": " + body : "");
  }
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (/hx-swap-oob="[^"]*#toasts/.test(xhr.responseText || "")) return;
    showToast(errorMessage(xhr), "error");
  });
  document.addEventListener("htmx:sendError", function () {
    showToast("The server did not answer. Check your connection and try again.", "error");
  });

  /* The live dot inside a WebSocket-connected element follows the connection. */
  function setLive(event, online) {
    var elt = event.target;
    if (!elt || !elt.querySelectorAll) return;
    elt.querySelectorAll(".live-dot").forEach(function (dot) {
      dot.classList.toggle("is-offline", !online);
      dot.title = online ? "Live" : "Reconnecting…";
    });
  }
  document.addEventListener("htmx:wsOpen", function (event) { setLive(event, true); });
  document.addEventListener("htmx:wsClose", function (event) { setLive(event, false); });
})();
