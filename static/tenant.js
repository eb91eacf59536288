/* payg tenant page: live balance, readings and chart for one socket; top-up helpers. Read-only. */
"use strict";
(function () {
  const P = window.payg;
  const $ = (id) => document.getElementById(id);
  const boot = P.boot();
  const id = boot.socket, topup = boot.topup;
  const histS = (boot.page && boot.page.history_s) || 3600;

  // the socket's state
  let lastBal = null;
  function render(v) {
    P.setText($("bal"), P.tok(v.balance_tokens));
    /* announce top-ups to screen readers, not every tick's small decrease */
    if (lastBal !== null && v.balance_tokens > lastBal + 0.5) P.setText($("bal-sr"), "Credit received. Balance " + P.tok(v.balance_tokens) + " tokens.");
    lastBal = v.balance_tokens;
    $("debt").hidden = !(v.debt > 0);
    P.setText($("debt-v"), P.tok(v.debt));
    P.setText($("eleft"), P.wh(v.energy_left_wh));
    P.setText($("tleft"), v.time_left_s === null || v.time_left_s === undefined ? P.DASH
      : (v.time_left_s < 60 ? "" : "\u2248 ") + P.dur(v.time_left_s));
    /* out of credit: the power is already off, so "top up soon" would be the wrong advice */
    const out = v.balance_tokens <= 0 || v.credit_exhausted;
    $("low").hidden = !v.low_credit;
    $("low").className = "banner " + (out ? "bad" : "warn");
    P.setText($("low-h"), out ? "Out of credit." : "Low credit.");
    P.setText($("low-t"), !out ? "Top up soon to keep the power on."
      : v.override === "off" ? "Top up to add credit." : "Top up to turn the power back on.");

    const on = v.relay === "on";
    $("relay").className = "pill " + (on ? "ok" : "off");
    P.setText($("relay-t"), on ? "On" : "Off");
    const why = [];
    if (v.override === "off") why.push("held off by the landlord");
    if (v.status === "offline") why.push("meter offline");
    else if (v.status === "alarm") why.push("meter alarm");
    if (!on && v.balance_tokens <= 0) why.push("out of credit");
    else if (!on && v.credit_exhausted) why.push("credit used up (what is left is kept for the next top-up)");
    const w = why.join("; ");
    P.setText($("why"), w.charAt(0).toUpperCase() + w.slice(1));
    $("why").hidden = !w;

    P.setText($("pw"), P.num(v.power_w, 0));
    P.setText($("vv"), P.num(v.voltage_v, 1, true));
    P.setText($("ca"), P.num(v.current_a, 2, true));
    P.setText($("today"), P.wh(v.energy_today_wh));
  }

  function showError(msg) {
    P.setText($("err"), msg || "");
    $("err").hidden = !msg;
  }

  // top up: presets switch the QR code and the URI
  const presets = $("presets"), qr = $("qr"), uri = $("uri"), uriT = $("uri-t");
  presets.hidden = false;
  presets.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-amount]");
    if (!b) return;
    const n = b.dataset.amount;
    for (const o of presets.querySelectorAll("button")) o.setAttribute("aria-pressed", o === b ? "true" : "false");
    const u = n ? (topup.uris[n] || topup.uri) : topup.uri;
    qr.src = topup.qr_url + (n ? "?amount=" + encodeURIComponent(n) : "");
    qr.alt = n ? "QR code to pay " + P.num(+n) + " tokens to this socket" : "QR code to pay this socket";
    uri.href = u;
    P.setText(uriT, u);
  });

  const copy = $("copy"), addr = $("addr"), copied = $("copied");
  copy.hidden = false;
  let copiedTimer = 0;
  function said(msg) {
    P.setText(copied, msg);
    clearTimeout(copiedTimer);
    copiedTimer = setTimeout(() => P.setText(copied, ""), 4000);
  }
  copy.addEventListener("click", async () => {
    const text = addr.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return said("Copied"); } catch (e) { /* fall back */ }
    }
    const r = document.createRange();
    r.selectNodeContents(addr);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(r);
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    said(ok ? "Copied" : "Address selected: copy it with your device's copy command");
  });

  // chart: power (W, left) and balance (tokens, right) over the last hour
  let data = [[], [], []];
  let plot = null;
  const box = $("chart");
  const chartH = (w) => (w < 500 ? 200 : 260);

  function makePlot() {
    if (typeof uPlot === "undefined") return;
    $("chart-card").hidden = false;
    const w = Math.max(200, Math.floor(box.clientWidth));
    const axis = { stroke: "#333", grid: { stroke: "#e4e6ea" }, ticks: { stroke: "#c8ccd2" } };
    plot = new uPlot({
      width: w, height: chartH(w),
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: (u, min, max) => { const hi = max || Date.now() / 1000; return [hi - histS, hi]; } },
        W: { range: (u, min, max) => [0, Math.max(100, (max || 0) * 1.1)] },
      },
      series: [
        { value: (u, t) => (t ? P.clock(t) : P.DASH) },
        { label: "Power", scale: "W", stroke: "#0b57d0", width: 2, fill: "rgba(11,87,208,0.08)",
          value: (u, v) => (v === null ? P.DASH : P.num(v, 0) + " W") },
        { label: "Balance", scale: "tok", stroke: "#a14000", width: 2,
          value: (u, v) => (v === null ? P.DASH : P.tok(v) + " tokens") },
      ],
      axes: [
        Object.assign({}, axis, { values: (u, ts) => ts.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })) }),
        Object.assign({}, axis, { scale: "W", label: "W", size: 56, values: (u, vs) => vs.map((v) => P.num(v, 0)) }),
        Object.assign({}, axis, { scale: "tok", side: 1, label: "tokens", size: 64, grid: { show: false },
          values: (u, vs) => vs.map((v) => P.tok(v)) }),
      ],
    }, data, box);
    if (window.ResizeObserver) {
      new ResizeObserver((es) => {
        const cw = Math.floor(es[0].contentRect.width);
        if (cw > 0 && (cw !== plot.width)) plot.setSize({ width: cw, height: chartH(cw) });
      }).observe(box);
    }
  }

  function setHistory(h) {
    if (!h || !h.t) return;
    data = [h.t.slice(), h.power_w.slice(), h.balance_tokens.slice()];
    if (plot) plot.setData(data);
  }

  function addPoint(v) {
    const t = v.updated_at, ts = data[0];
    if (!t || (ts.length && t <= ts[ts.length - 1])) return;
    ts.push(t);
    data[1].push(v.power_w === undefined ? null : v.power_w);
    data[2].push(v.balance_tokens === undefined ? null : v.balance_tokens);
    let cut = 0;
    while (cut < ts.length && ts[cut] < t - histS) cut++;
    if (cut) for (const a of data) a.splice(0, cut);
    if (plot) plot.setData(data);
  }

  render(boot.view);
  makePlot();

  // live updates over Socket.IO; re-subscribe on every (re)connect
  if (typeof io === "undefined") return;
  const sock = io();
  P.watchConnection(sock, $("live"));
  sock.on("connect", () => {
    sock.emit("watch", { socket: id }, (ack) => {
      if (ack && ack.ok) {
        showError("");
        render(ack.view);
        setHistory(ack.history);
      } else {
        showError("Live updates are unavailable: " + ((ack && ack.error) || "no answer") + ".");
      }
    });
  });
  sock.on("state", (v) => {
    if (!v || v.id !== id) return;
    render(v);
    addPoint(v);
  });
})();
