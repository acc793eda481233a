/* BTC Watcher monitoring pages: the capacity trend chart and the System page's host charts.
 * Both are drawn with the vendored ECharts from the JSON API; htmx refreshes everything else.
 * Plain script, no build step. */
(function () {
  "use strict";

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(url + " answered " + response.status);
        return response.json();
      });
  }

  function fail(error) {
    if (window.btcWatcher) window.btcWatcher.toast("Chart data could not be loaded: " + error.message, "error");
  }

  function setTile(id, value, sub) {
    var tile = document.getElementById(id);
    if (!tile) return;
    tile.querySelector(".stat-value").textContent = value;
    var subEl = tile.querySelector(".stat-sub");
    if (subEl && sub !== undefined) subEl.textContent = sub;
  }

  function pct(value) { return (value === null || value === undefined) ? "—" : Number(value).toFixed(2) + "%"; }

  function chartFor(el) {
    var chart = window.echarts.getInstanceByDom(el) || window.echarts.init(el, null, { renderer: "canvas" });
    if (!el.dataset.resizeHooked) {
      window.addEventListener("resize", function () { chart.resize(); });
      el.dataset.resizeHooked = "1";
    }
    return chart;
  }

  /* ---------------------------------------------------------------- capacity trend */
  function capacityTrend(section) {
    var url = section.dataset.trendUrl;
    var chartEl = document.getElementById("capacity-trend-chart");
    var buttons = section.querySelectorAll("button[data-hours]");
    var hours = 24;

    function draw(data) {
      var effective = data.data_points.map(function (p) { return [p.timestamp * 1000, p.effective_utilization]; });
      var slots = data.data_points.map(function (p) { return [p.timestamp * 1000, p.utilization]; });
      chartFor(chartEl).setOption({
        animation: false,
        grid: { left: 48, right: 24, top: 36, bottom: 36 },
        tooltip: { trigger: "axis", valueFormatter: function (v) { return Number(v).toFixed(2) + "%"; } },
        legend: { top: 0, data: ["Effective utilisation", "Slot utilisation"] },
        xAxis: { type: "time" },
        yAxis: { type: "value", min: 0, max: 100, name: "%" },
        series: [
          { name: "Effective utilisation", type: "line", smooth: true, showSymbol: effective.length < 60,
            data: effective, areaStyle: { color: "rgba(29, 91, 208, 0.12)" }, lineStyle: { color: "#1d5bd0" },
            itemStyle: { color: "#1d5bd0" },
            markLine: { symbol: "none", silent: true, lineStyle: { color: "#e59a12", type: "dashed" },
                        label: { formatter: "alert {c}%", position: "insideEndTop" },
                        data: [{ yAxis: data.alert_threshold }] } },
          { name: "Slot utilisation", type: "line", smooth: true, showSymbol: false, data: slots,
            lineStyle: { color: "#8a94a6" }, itemStyle: { color: "#8a94a6" } }
        ]
      }, true);
      var eff = data.effective;
      setTile("trend-current", pct(eff.current_utilization), "effective · slots " + pct(data.current_utilization));
      setTile("trend-peak", pct(eff.peak_utilization), "slots " + pct(data.peak_utilization));
      setTile("trend-average", pct(eff.average_utilization), "slots " + pct(data.average_utilization));
      setTile("trend-direction", eff.trend, "slots: " + data.trend);
      var note = document.getElementById("trend-note");
      if (note) {
        note.textContent = data.samples + " sample" + (data.samples === 1 ? "" : "s") + " in the last " +
          (data.period_hours === 24 ? "24 hours" : (data.period_hours / 24) + " days") +
          " (one every 5 minutes, kept 7 days) and the current figure.";
      }
      chartEl.dataset.hours = String(data.period_hours);
      chartEl.dataset.points = String(data.data_points.length);
    }

    function load(h) {
      hours = h;
      buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(Number(b.dataset.hours) === h)); });
      chartEl.setAttribute("aria-busy", "true");
      return getJSON(url + "?hours=" + h).then(draw).catch(fail).finally(function () {
        chartEl.removeAttribute("aria-busy");
      });
    }

    buttons.forEach(function (b) {
      b.addEventListener("click", function () { load(Number(b.dataset.hours)); });
    });
    /* A saved threshold moves the dashed line. */
    document.body.addEventListener("htmx:afterSwap", function (event) {
      if (event.target && event.target.id === "capacity-threshold") load(hours);
    });
    setInterval(function () { load(hours); }, 5 * 60 * 1000);
    load(hours);
  }

  /* --------------------------------------------------------------- host charts */
  function hostCharts(section) {
    var url = section.dataset.historyUrl;
    var cpuEl = document.getElementById("host-cpu-chart");
    var memEl = document.getElementById("host-memory-chart");
    var note = document.getElementById("host-charts-note");
    var buttons = section.querySelectorAll("button[data-query]");
    var query = "minutes=60";

    function small(el, name, color, points, key) {
      chartFor(el).setOption({
        animation: false,
        grid: { left: 40, right: 12, top: 12, bottom: 28 },
        tooltip: { trigger: "axis", valueFormatter: function (v) { return v === null ? "—" : Number(v).toFixed(1) + "%"; } },
        xAxis: { type: "time", axisLabel: { hideOverlap: true } },
        yAxis: { type: "value", min: 0, max: 100 },
        series: [{ name: name, type: "line", showSymbol: points.length < 30, smooth: true,
                   data: points.map(function (p) { return [p.t * 1000, p[key]]; }),
                   lineStyle: { color: color }, itemStyle: { color: color },
                   areaStyle: { color: color, opacity: 0.12 } }]
      }, true);
      el.dataset.points = String(points.length);
    }

    function load(q) {
      query = q || query;
      buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.query === query)); });
      return getJSON(url + "?" + query).then(function (data) {
        small(cpuEl, "CPU", "#1d5bd0", data.points, "cpu_percent");
        small(memEl, "Memory", "#5b3cc4", data.points, "memory_percent");
        if (note) {
          note.textContent = data.resolution_seconds
            ? data.points.length + " five-minute averages (kept 7 days)."
            : "Last hour: one point per host sample (every 30 s).";
        }
        cpuEl.dataset.query = query;
      }).catch(fail);
    }
    buttons.forEach(function (b) {
      b.addEventListener("click", function () { load(b.dataset.query); });
    });
    /* A pushed host sample (htmx-ws) or the fallback poll redraws the short view. */
    ["htmx:afterSwap", "htmx:oobAfterSwap"].forEach(function (name) {
      document.body.addEventListener(name, function (event) {
        if (event.target && event.target.id === "system-host" && query === "minutes=60") load();
      });
    });
    setInterval(function () { load(); }, 60 * 1000);
    load();
  }

  /* ------------------------------------------------------------ threshold slider */
  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "threshold-slider") {
      var out = document.getElementById("threshold-value");
      if (out) out.textContent = event.target.value;
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.echarts) return;
    var trend = document.getElementById("capacity-trend");
    if (trend) capacityTrend(trend);
    var host = document.getElementById("host-charts");
    if (host) hostCharts(host);
  });
})();
