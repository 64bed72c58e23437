/* kassa-monitor pages: live updates over SSE, countdowns, the history chart, bulk selection.
   Small and dependency-free; every page works without it (plain links and forms). */
(function () {
  "use strict";

  // --- countdowns: the same wording as the server's render.countdown_text ----------------------
  function duration(totalSeconds) {
    var total = Math.floor(Math.abs(totalSeconds));
    var days = Math.floor(total / 86400), hours = Math.floor((total % 86400) / 3600), minutes = Math.floor((total % 3600) / 60);
    if (days) return hours ? days + " дн. " + hours + " ч" : days + " дн.";
    if (hours) return minutes ? hours + " ч " + minutes + " мин" : hours + " ч";
    if (minutes) return minutes + " мин";
    return "меньше минуты";
  }
  function countdownText(seconds) {
    if (seconds > 0) return "через " + duration(seconds);
    return seconds < -60 ? "заблокирована " + duration(-seconds) + " назад" : "заблокирована";
  }
  function tickCountdowns() {
    var now = Date.now();
    document.querySelectorAll("[data-blocks-at]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("data-blocks-at"));
      if (!isNaN(at)) {
        var text = countdownText((at - now) / 1000);
        if (el.textContent !== text) el.textContent = text;
      }
    });
  }

  // --- live regions: re-fetch this page and swap the marked regions -----------------------------
  var refreshTimer = null;
  function regionBusy(el) {
    // Never yank a form from under the user: focus inside, a ticked box or an opened form.
    var active = document.activeElement;
    if (active && active !== document.body && el.contains(active)) return true;
    return el.querySelector("input[type=checkbox]:checked, details[open] textarea, details[open] input") !== null;
  }
  function refreshRegions() {
    refreshTimer = null;
    fetch(window.location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (region) {
          var replacement = region.id && fresh.getElementById(region.id);
          if (replacement && !regionBusy(region)) region.replaceWith(document.importNode(replacement, true));
        });
        tickCountdowns();
        bindBulk();
        document.body.setAttribute("data-refreshed", String(Number(document.body.getAttribute("data-refreshed") || 0) + 1));
      })
      .catch(function () { /* the next notice retries */ });
  }
  function scheduleRefresh() {
    if (refreshTimer === null) refreshTimer = setTimeout(refreshRegions, 300);
  }

  // --- the SSE connection with its indicator ----------------------------------------------------
  function setLive(state, text) {
    var box = document.getElementById("live-status");
    if (!box) return;
    box.setAttribute("data-state", state);
    var label = box.querySelector(".live-text");
    if (label && label.textContent !== text) label.textContent = text;
  }
  function connect() {
    var url = document.body.getAttribute("data-stream");
    if (!url || !window.EventSource) { setLive("error", "Обновления недоступны в этом браузере"); return; }
    var source = new EventSource(url);
    var received = 0;
    source.onopen = function () { setLive("open", "Обновления в реальном времени включены"); };
    source.onerror = function () { setLive("error", "Нет связи с сервером, переподключаемся…"); };
    function onNotice(event) {
      received += 1;
      document.body.setAttribute("data-live-events", String(received));
      try {
        var notice = JSON.parse(event.data);
        document.querySelectorAll('[data-register-id="' + CSS.escape(notice.register_id) + '"]').forEach(function (row) {
          row.classList.remove("is-updated"); void row.offsetWidth; row.classList.add("is-updated");
        });
      } catch (e) { /* a malformed notice still triggers the refresh */ }
      scheduleRefresh();
    }
    source.addEventListener("register", onNotice);
    source.addEventListener("alert", onNotice);
    source.addEventListener("reset", function () { window.location.reload(); });
  }

  // --- history chart: backlog line and a shift band, plain SVG ----------------------------------
  var SVG = "http://www.w3.org/2000/svg";
  function svg(name, attrs, text) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { el.setAttribute(key, attrs[key]); });
    if (text !== undefined) el.textContent = text;
    return el;
  }
  var SHIFT_COLOURS = { open: "#2da44e", expired: "#cf222e", closed: "#8c959f", unknown: "#d0d7de" };
  function drawChart() {
    var holder = document.getElementById("history-chart"), source = document.getElementById("history-data");
    if (!holder || !source) return;
    var points = JSON.parse(source.textContent || "[]").map(function (p) {
      return { t: Date.parse(p.t), local: p.local, unsent: p.unsent, shift: p.shift || "unknown" };
    }).filter(function (p) { return !isNaN(p.t); });
    if (!points.length) return;
    var W = 800, H = 260, left = 48, right = 12, top = 12, band = 14, bottom = 40;
    var t0 = points[0].t, t1 = points[points.length - 1].t; if (t1 === t0) t1 = t0 + 60000;
    var maxY = Math.max(1, Math.max.apply(null, points.map(function (p) { return p.unsent || 0; })));
    var x = function (t) { return left + (t - t0) / (t1 - t0) * (W - left - right); };
    var y = function (v) { return top + (1 - v / maxY) * (H - top - bottom - band - 6); };
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, "aria-hidden": "true", focusable: "false" });
    root.appendChild(svg("line", { x1: left, y1: y(0), x2: W - right, y2: y(0), stroke: "#d0d7de" }));
    root.appendChild(svg("line", { x1: left, y1: y(maxY), x2: W - right, y2: y(maxY), stroke: "#eef1f4" }));
    root.appendChild(svg("text", { x: left - 6, y: y(maxY) + 4, "text-anchor": "end", "font-size": 12 }, String(maxY)));
    root.appendChild(svg("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end", "font-size": 12 }, "0"));
    var line = points.filter(function (p) { return p.unsent !== null && p.unsent !== undefined; })
      .map(function (p) { return x(p.t).toFixed(1) + "," + y(p.unsent).toFixed(1); }).join(" ");
    if (line) root.appendChild(svg("polyline", { points: line, fill: "none", stroke: "#0b57d0", "stroke-width": 2 }));
    var bandY = H - bottom - band + 4;
    points.forEach(function (p, i) {
      var end = i + 1 < points.length ? points[i + 1].t : t1;
      root.appendChild(svg("rect", { x: x(p.t), y: bandY, width: Math.max(1, x(end) - x(p.t)), height: band, fill: SHIFT_COLOURS[p.shift] || SHIFT_COLOURS.unknown }));
    });
    // The axis is labelled with the server's own rendering in the company's zone (as the rest of
    // the page), never the browser's zone.
    var first = points[0].local, last = points[points.length - 1].local;
    root.appendChild(svg("text", { x: left, y: H - 8, "font-size": 12, "class": "axis-from" }, first));
    root.appendChild(svg("text", { x: W - right, y: H - 8, "font-size": 12, "text-anchor": "end", "class": "axis-to" }, last));
    holder.textContent = "";
    holder.appendChild(root);
  }

  // --- bulk selection on the alerts page ----------------------------------------------------------
  function bindBulk() {
    var all = document.getElementById("select-all"), button = document.getElementById("bulk-ack");
    if (!button) return;
    var boxes = function () { return Array.prototype.slice.call(document.querySelectorAll(".select-alert:not(:disabled)")); };
    var update = function () {
      var chosen = boxes().filter(function (box) { return box.checked; }).length;
      button.disabled = chosen === 0;
      button.textContent = chosen ? "Подтвердить выбранные (" + chosen + ")" : "Подтвердить выбранные";
      if (all) { all.checked = chosen > 0 && chosen === boxes().length; all.indeterminate = chosen > 0 && chosen < boxes().length; }
    };
    if (all && !all.dataset.bound) {
      all.dataset.bound = "1";
      all.addEventListener("change", function () { boxes().forEach(function (box) { box.checked = all.checked; }); update(); });
    }
    boxes().forEach(function (box) {
      if (!box.dataset.bound) { box.dataset.bound = "1"; box.addEventListener("change", update); }
    });
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    tickCountdowns();
    setInterval(tickCountdowns, 1000);
    drawChart();
    bindBulk();
    connect();
  });
})();
