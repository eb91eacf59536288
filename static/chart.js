/* payg chart: a socket's power (W, left axis) and balance (right axis) over the last hour, day or 30 days, drawn
   with uPlot from the journal's history (GET /api/sockets/<id>/history?span=...), so it survives a restart; the
   live readings a page hands in are appended at the right end.

   window.paygChart.mount(element, socketId, options) -> chart
     options: span ("hour", "day" or "month"; default "hour"), spans (an element holding buttons [data-span]: the
     switch), empty (an element shown while nothing is drawn), since (an element that says where the readings
     start when they fill only part of the span), card (an element unhidden once uPlot is there).
     chart.live(history): the recent readings {t, power_w, balance_tokens} (the Socket.IO `watch` reply);
     chart.push(view): one live view (its updated_at, power_w, balance_tokens); chart.setSpan(span).
   Needs static/common.js (window.payg) and uPlot. */
"use strict";
window.paygChart = (function () {
  /* every word the chart shows, in the page's language (static/common.js `_`); each text is written out in its
     call, where `make messages` finds it */
  const _ = window.payg._;
  const T = {
    time: _("Time"),   /* the legend's first column: uPlot's own word is English */
    power: _("Power"),
    balance: _("Balance"),
    watts: "W",
    noReadings: _("No readings yet."),
    since: (time) => _("Readings since {time}.", { time }),
    /* the chart's accessible name: what it shows over the span, from when to when */
    label: {
      hour: (a) => _("Chart of power in watts and balance in {unit} over the last hour, from {from} to {to}.", a),
      day: (a) => _("Chart of power in watts and balance in {unit} over the last day, from {from} to {to}.", a),
      month: (a) => _("Chart of power in watts and balance in {unit} over the last 30 days, from {from} to {to}.", a),
    },
    latest: (power, balance) => (balance ? _("Latest reading: {power} W, {balance}.", { power, balance })
      : _("Latest reading: {power} W.", { power })),
    failed: _("The chart's history could not be read."),
  };
  const LENGTH_S = { hour: 3600, day: 86400, month: 30 * 86400 };
  const REFETCH_S = { hour: 60, day: 300, month: 1800 };   // a new bucket ends every 1 min, 15 min, 6 h
  const FEW = 40;   // fewer values than this in view: each one is drawn as a point (a line needs two)
  const POWER = "#0b57d0", BALANCE = "#a14000";

  function mount(box, socketId, options) {
    const P = window.payg;
    const o = options || {};
    let span = LENGTH_S[o.span] ? o.span : "hour";
    let stored = { t: [], power_w: [], balance_tokens: [] };   // the journal's buckets of the span
    let recent = [[], [], []];                               // live readings: t, power, balance
    let data = [[], [], []];
    let skew = 0, plot = null, fetched = 0, asked = 0;
    const now = () => Date.now() / 1000 + skew;   // the controller's time (its answers carry it)
    const chartH = (w) => (w < 500 ? 200 : 260);
    const hhmm = (t) => new Date(t * 1000).toLocaleTimeString(P.lang, { hour: "2-digit", minute: "2-digit" });
    const dayMonth = (t) => new Date(t * 1000).toLocaleDateString(P.lang, { day: "numeric", month: "short" });
    const tick = (t) => (span === "month" ? dayMonth(t) : hhmm(t));
    const when = (t) => (span === "month" ? dayMonth(t) + " " + hhmm(t) : hhmm(t));

    /* the index of a series' latest value: the legend shows it while the pointer is not on the chart */
    function latest(si) {
      const ys = data[si];
      for (let i = ys.length - 1; i >= 0; i--) if (ys[i] !== null && ys[i] !== undefined) return i;
      return null;
    }
    const legend = (si, fmt) => (u, v, s, i) => {
      if (i === null || i === undefined) {
        const j = latest(si);
        v = j === null ? null : data[si][j];
      }
      return v === null || v === undefined ? P.DASH : fmt(v);
    };
    const points = {
      size: 7,
      show: (u, si, i0, i1) => {
        let n = 0;
        for (let i = i0; i <= i1 && n < FEW; i++) if (data[si][i] !== null && data[si][i] !== undefined) n++;
        return n < FEW;
      },
      filter: (u, si, show) => {
        if (show) return null;
        const j = latest(si);
        return j === null ? null : [j];
      },
    };
    /* a bucket's power is its average: held over the bucket that ends at its point (the hour's live readings are
       drawn point to point) */
    const paths = typeof uPlot !== "undefined" && uPlot.paths && uPlot.paths.stepped ? uPlot.paths : null;
    const stepped = paths && paths.stepped({ align: -1 }), linear = paths && paths.linear();

    /* The span ending now, with room at its right end for the latest point (8 px). */
    function range() {
      const t = now(), len = LENGTH_S[span], px = plot ? Math.max(100, plot.over.clientWidth) : 300;
      return [t - len, t + len * 8 / px];
    }

    /* the journal's buckets up to the first live reading, then the live readings (the hour), or their latest */
    function merge() {
      const from = now() - LENGTH_S[span];
      const liveFrom = recent[0].length ? recent[0][0] : Infinity;
      const out = [[], [], []];
      const s = stored;
      for (let i = 0; i < s.t.length; i++) {
        if (s.t[i] < from || s.t[i] >= liveFrom) continue;
        out[0].push(s.t[i]); out[1].push(s.power_w[i]); out[2].push(s.balance_tokens[i]);
      }
      const n = recent[0].length, first = span === "hour" ? 0 : Math.max(0, n - 1);
      for (let i = first; i < n; i++) {
        if (recent[0][i] < from || (out[0].length && recent[0][i] <= out[0][out[0].length - 1])) continue;
        out[0].push(recent[0][i]); out[1].push(recent[1][i]); out[2].push(recent[2][i]);
      }
      return out;
    }

    function redraw() {
      data = merge();
      if (!plot) return;
      const x = range();
      plot.batch(() => {
        plot.setData(data);
        plot.setScale("x", { min: x[0], max: x[1] });
        if (plot.cursor.idx === null || plot.cursor.idx === undefined) plot.setLegend({ idx: null });
      });
      const j = latest(1), k = latest(2);
      let first = null;
      for (let i = 0; i < data[0].length && first === null; i++) if (data[1][i] !== null || data[2][i] !== null) first = data[0][i];
      if (o.empty) o.empty.hidden = j !== null;
      /* a socket new to the controller fills only the right end of the span: say where its readings start */
      if (o.since) P.setText(o.since, j !== null && first !== null && first - x[0] > LENGTH_S[span] / 12 ? T.since(when(first)) : "");
      const last = j === null ? T.noReadings : T.latest(P.num(data[1][j], 0), k === null ? "" : P.money(data[2][k]));
      const said = T.label[span]({ unit: P.moneyWord(), from: when(x[0]), to: when(now()) }) + " " + last;
      if (box.getAttribute("aria-label") !== said) box.setAttribute("aria-label", said);
    }

    function make() {
      if (typeof uPlot === "undefined") return;
      if (o.card) o.card.hidden = false;
      const w = Math.max(200, Math.floor(box.clientWidth));
      const axis = { stroke: "#333", grid: { stroke: "#e4e6ea" }, ticks: { stroke: "#c8ccd2" } };
      const yAxis = { labelSize: 18, labelGap: 0 };
      plot = new uPlot({
        width: w, height: chartH(w),
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true, range: () => range() },
          W: { range: (u, min, max) => [0, Math.max(100, (max || 0) * 1.1)] },
          /* a little more headroom than power's, so a full balance and a full load are not one point */
          tok: { range: (u, min, max) => [Math.min(0, min || 0), Math.max(10, (max || 0) * 1.25)] },
        },
        series: [
          { label: T.time, value: (u, t, s, i) => {
            if (i === null || i === undefined) t = data[0].length ? data[0][data[0].length - 1] : null;
            return t ? (span === "month" ? dayMonth(t) + " " : "") + P.clock(t) : P.DASH;
          } },
          { label: T.power, scale: "W", stroke: POWER, width: 2, fill: "rgba(11,87,208,0.08)",
            paths: paths ? (u, si, i0, i1) => (span === "hour" ? linear : stepped)(u, si, i0, i1) : undefined,
            points: Object.assign({ fill: POWER }, points),
            value: legend(1, (v) => P.num(v, 0) + " " + T.watts) },
          { label: T.balance, scale: "tok", stroke: BALANCE, width: 2,
            points: Object.assign({ fill: BALANCE }, points),
            value: legend(2, (v) => P.money(v)) },
        ],
        axes: [
          Object.assign({}, axis, { space: 70, values: (u, ts) => ts.map(tick) }),
          Object.assign({}, axis, yAxis, { scale: "W", label: T.watts, size: 44,
            values: (u, vs) => vs.map((v) => P.num(v, 0)) }),
          Object.assign({}, axis, yAxis, { scale: "tok", side: 1, label: P.moneyWord(), size: 52, grid: { show: false },
            values: (u, vs) => vs.map((v) => P.figure(v)) }),
        ],
      }, data, box);
      if (window.ResizeObserver) {
        new ResizeObserver((es) => {
          const cw = Math.floor(es[0].contentRect.width);
          if (cw > 0 && cw !== plot.width) plot.setSize({ width: cw, height: chartH(cw) });
        }).observe(box);
      }
    }

    /* the span's buckets from the journal; an answer for a span no longer shown is dropped */
    async function load() {
      const want = span, n = ++asked;
      try {
        const res = await fetch("/api/sockets/" + encodeURIComponent(socketId) + "/history?span=" + want,
          { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!res.ok) throw new Error(String(res.status));
        const h = await res.json();
        if (n !== asked) return;
        skew = h.now - Date.now() / 1000;
        stored = h;
        fetched = Date.now() / 1000;
      } catch (e) {
        if (n !== asked) return;
        if (o.since) P.setText(o.since, T.failed);
      }
      redraw();
      box.setAttribute("aria-busy", "false");
    }

    function setSpan(s) {
      if (!LENGTH_S[s] || s === span && fetched) return;
      span = s;
      stored = { t: [], power_w: [], balance_tokens: [] };
      if (o.spans) for (const b of o.spans.querySelectorAll("button[data-span]")) b.setAttribute("aria-pressed", b.dataset.span === s ? "true" : "false");
      if (plot) plot.redraw(false, true);
      box.setAttribute("aria-busy", "true"); /* until the span's history has come: live readings alone until then */
      redraw();
      load();
    }

    function live(h) {
      if (!h || !h.t) return;
      recent = [h.t.slice(), h.power_w.slice(), h.balance_tokens.slice()];
      redraw();
    }

    function push(v) {
      const t = v && v.updated_at, ts = recent[0];
      if (!t) return;
      skew = t - Date.now() / 1000;
      if (!ts.length || t > ts[ts.length - 1]) {
        ts.push(t);
        recent[1].push(v.power_w === undefined ? null : v.power_w);
        recent[2].push(v.balance_tokens === undefined ? null : v.balance_tokens);
        /* keep an hour of live readings: the longer spans take only the latest */
        let cut = 0;
        while (cut < ts.length && ts[cut] < t - LENGTH_S.hour) cut++;
        if (cut) for (const a of recent) a.splice(0, cut);
      }
      redraw();
    }

    if (o.spans) {
      o.spans.addEventListener("click", (e) => {
        const b = e.target.closest("button[data-span]");
        if (b) setSpan(b.dataset.span);
      });
    }
    make();
    setSpan(span);
    /* the span moves on while no reading comes (the controller down), and new buckets end */
    setInterval(() => {
      if (Date.now() / 1000 - fetched >= REFETCH_S[span]) load();
      else redraw();
    }, 10000);
    return { live, push, setSpan, span: () => span };
  }

  return { mount, T };
})();
