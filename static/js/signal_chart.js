/* Candle charts with a strategy's signals (ECharts, vendored): every element with
   data-signal-chart="<url of /api/v1/signals/chart…>" gets candles, the signals as markers
   coloured by level (hover: strength and the outcome after 1, 4 and 24 candles), the trades'
   fills, and on a signal's page the three horizons. It follows new candles (data-follow="30"
   seconds). Elements with data-decile-chart='<json>' get the mean return by strength decile. */
(function () {
  "use strict";
  var LEVEL = { strong: "#d9480f", medium: "#f59f00", weak: "#4dabf7", ignore: "#adb5bd" };

  function pct(v) { return v === null || v === undefined ? "—" : (v * 100).toFixed(3) + " %"; }

  function chartFor(el) {
    var chart = window.echarts.getInstanceByDom(el) || window.echarts.init(el, null, { renderer: "canvas" });
    if (!el.dataset.resizeBound) {
      el.dataset.resizeBound = "1";
      window.addEventListener("resize", function () { chart.resize(); });
    }
    return chart;
  }

  function tip(s) {
    var lines = ["#" + s.id + " " + s.action.replace("_", " ") + " @ " + s.rate,
                 "level " + s.level + (s.strength === null ? "" : " · strength " + s.strength.toFixed(3))];
    var o = s.outcome;
    if (!o) { lines.push("outcome: not scored yet"); }
    else if (o.status === "unavailable") { lines.push("outcome unavailable: " + o.reason); }
    else {
      lines.push("after 1 / 4 / 24 candles: " + pct(o.return_1) + " / " + pct(o.return_4) + " / " + pct(o.return_24));
      if (o.max_favourable !== null) { lines.push("best " + pct(o.max_favourable) + ", worst " + pct(o.max_adverse)); }
    }
    return lines.join("<br>");
  }

  function render(el, data) {
    var times = data.candles.map(function (c) { return c[0]; });
    var index = {};
    times.forEach(function (t, i) { index[t] = i; });
    var labels = times.map(function (t) { return new Date(t).toISOString().slice(11, 16); });
    var ohlc = data.candles.map(function (c) { return [c[1], c[4], c[3], c[2]]; });
    var signalPoints = data.signals.filter(function (s) { return s.time in index; }).map(function (s) {
      var falling = s.action === "exit_long" || s.action === "enter_short";
      return { name: "signal", coord: [index[s.time], s.rate], value: s.level[0].toUpperCase(),
               symbol: falling ? "pin" : "pin", symbolRotate: falling ? 180 : 0, symbolSize: 34,
               itemStyle: { color: LEVEL[s.level] || LEVEL.ignore }, signal: s };
    });
    var tradePoints = data.trades.filter(function (t) { return t.time in index; }).map(function (t) {
      return { name: t.side, coord: [index[t.time], t.rate], value: t.side === "entry" ? "▲" : "▼",
               symbol: "circle", symbolSize: 14, itemStyle: { color: t.side === "entry" ? "#2f9e44" : "#c92a2a" }, trade: t };
    });
    var horizonLines = (data.horizons || []).filter(function (h) { return h.time in index; }).map(function (h) {
      return { xAxis: index[h.time], label: { formatter: "+" + h.candles } };
    });
    chartFor(el).setOption({
      animation: false,
      grid: { left: 60, right: 20, top: 20, bottom: 40 },
      tooltip: { trigger: "item", formatter: function (p) {
        if (p.data && p.data.signal) { return tip(p.data.signal); }
        if (p.data && p.data.trade) { return p.data.trade.side + " fill @ " + p.data.trade.rate; }
        if (p.seriesType === "candlestick") { var v = p.data; return labels[p.dataIndex] + "<br>O " + v[1] + " C " + v[2] + "<br>L " + v[3] + " H " + v[4]; }
        return ""; } },
      xAxis: { type: "category", data: labels, boundaryGap: true },
      yAxis: { type: "value", scale: true },
      dataZoom: [{ type: "inside" }],
      series: [{
        type: "candlestick", name: data.pair, data: ohlc,
        itemStyle: { color: "#2f9e44", color0: "#c92a2a", borderColor: "#2f9e44", borderColor0: "#c92a2a" },
        markPoint: { data: signalPoints.concat(tradePoints), label: { color: "#fff", fontSize: 10 } },
        markLine: { symbol: "none", data: horizonLines, lineStyle: { type: "dashed", color: "#868e96" } }
      }]
    }, true);
    el.dataset.markers = String(signalPoints.length);
    el.dataset.candles = String(ohlc.length);
    var note = el.parentNode.querySelector("[data-chart-note]");
    if (note) {
      note.textContent = data.error ? "Candles unavailable: " + data.error
        : data.pair + " · " + data.timeframe + " · " + ohlc.length + " candles · " + signalPoints.length + " signals · " + tradePoints.length + " fills";
    }
  }

  function load(el) {
    if (!window.echarts) { return; }
    fetch(el.dataset.signalChart, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : r.json().then(function (b) { throw new Error(b.message || r.status); }); })
      .then(function (data) { render(el, data); el.dataset.loaded = "1"; })
      .catch(function (e) { var note = el.parentNode.querySelector("[data-chart-note]"); if (note) { note.textContent = "Chart unavailable: " + e.message; } });
  }

  function deciles(el) {
    if (!window.echarts) { return; }
    var rows = JSON.parse(el.dataset.decileChart || "[]");
    chartFor(el).setOption({
      animation: false, grid: { left: 50, right: 10, top: 10, bottom: 30 },
      tooltip: { trigger: "axis", formatter: function (p) { var r = rows[p[0].dataIndex]; return "decile " + r.decile + " (" + r.from.toFixed(3) + "–" + r.to.toFixed(3) + ")<br>mean " + pct(r.mean) + ", right " + (r.hit_rate * 100).toFixed(0) + " %, n = " + r.count; } },
      xAxis: { type: "category", data: rows.map(function (r) { return "D" + r.decile; }) },
      yAxis: { type: "value", axisLabel: { formatter: function (v) { return (v * 100).toFixed(2) + "%"; } } },
      series: [{ type: "bar", data: rows.map(function (r) { return { value: r.mean, itemStyle: { color: r.mean >= 0 ? "#2f9e44" : "#c92a2a" } }; }) }]
    }, true);
    el.dataset.loaded = "1";
  }

  function start() {
    document.querySelectorAll("[data-signal-chart]").forEach(function (el) {
      load(el);
      var follow = parseInt(el.dataset.follow || "0", 10);
      if (follow > 0 && !el.dataset.timer) { el.dataset.timer = String(setInterval(function () { load(el); }, follow * 1000)); }
    });
    document.querySelectorAll("[data-decile-chart]").forEach(deciles);
  }
  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("htmx:afterSettle", start);
  window.btcwSignalCharts = { start: start };
})();
