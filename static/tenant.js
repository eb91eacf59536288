/* payg tenant page: live balance, readings and chart for one socket; top-up helpers; entering a top-up code
   and taking emergency credit (the tenant's actions). */
"use strict";
(function () {
  const P = window.payg;
  const $ = (id) => document.getElementById(id);
  const boot = P.boot();
  const id = boot.socket, topup = boot.topup;
  const histS = (boot.page && boot.page.history_s) || 3600;
  P.useMoney(boot.page && boot.page.money);

  // the socket's state
  let lastBal = null;
  /* the credit lasts less than h hours at the present power ([protections] warn_hours); null: no warning */
  const hoursLeft = (h) => (h === null || h === undefined ? ""
    : "Less than " + P.num(h, 2) + (h === 1 ? " hour" : " hours") + " of credit left at the present power. ");
  function render(v) {
    P.setText($("bal"), P.figure(v.balance_tokens));
    /* announce top-ups to screen readers, not every tick's small decrease */
    if (lastBal !== null && v.balance_tokens > lastBal + 0.5) P.setText($("bal-sr"), "Credit received. Balance " + P.money(v.balance_tokens) + ".");
    lastBal = v.balance_tokens;
    /* what is owed; with a repayment plan a top-up repays only part of it, so credit and debt can both be there */
    $("debt").hidden = !(v.debt > 0);
    P.setText($("debt-v"), P.figure(v.debt));
    if ($("debt-u")) P.setText($("debt-u"), v.debt === 1 ? "token" : "tokens");
    P.setText($("debt-t"), v.balance > 0
      ? "With your repayment plan, part of each top-up repays it; the rest is credit you can use at once."
      : "Your next top-ups repay it.");
    P.setText($("eleft"), P.wh(v.energy_left_wh));
    P.setText($("tleft"), v.time_left_s === null || v.time_left_s === undefined ? P.DASH
      : (v.time_left_s < 60 ? "" : "\u2248 ") + P.dur(v.time_left_s));
    /* out of credit: the power is already off, so "top up soon" would be the wrong advice */
    const out = v.balance_tokens <= 0 || v.credit_exhausted;
    $("low").hidden = !v.low_credit;
    $("low").className = "banner " + (out ? "bad" : "warn");
    P.setText($("low-h"), v.vacant ? "Not paid for yet." : out ? "Out of credit." : "Low credit.");
    P.setText($("low-t"), v.vacant ? "Top up to turn the power on."
      : !out ? hoursLeft(v.credit_warning_h) + "Top up soon to keep the power on."
      : v.override === "off" ? "Top up to add credit."
      /* on although out of credit: a friendly-credit period keeps it on, and the usage becomes debt */
      : v.relay === "on" ? "The power stays on for now (friendly-credit hours), and what it uses is owed: top up to keep it on."
      : "Top up to turn the power back on.");

    const on = v.relay === "on";
    $("relay").className = "pill " + (on ? "ok" : "off");
    P.setText($("relay-t"), on ? "On" : "Off");
    const why = [];
    if (v.override === "off") why.push("held off by the landlord");
    if (v.status === "offline") why.push("meter offline");
    else if (v.status === "alarm") why.push("meter alarm");
    if (!on && v.vacant) why.push("not paid for yet: a top-up turns it on");
    else if (!on && v.balance_tokens <= 0) why.push("out of credit");
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
    qr.alt = n ? "QR code to pay " + P.money(+n) + " to this socket" : "QR code to pay this socket";
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
    said(await P.copyText(addr) === "copied" ? "Copied" : "Address selected: copy it with your device's copy command");
  });

  // a top-up code: 9 digits (spaces, dashes or dots between them are fine), checked here before it is sent, so
  // a slip of the finger is not counted as a wrong code; the answer's view updates the page at once
  const codeCard = $("code-card"), codeForm = $("code-f"), codeIn = $("code-in"), codeGo = $("code-go"),
    codeOut = $("code-out");
  let codeBusy = false, codeWaitUntil = 0;
  codeCard.hidden = $("go-code").hidden = false;
  function codeSay(text, kind) {
    codeOut.className = "code-out" + (kind ? " " + kind : "");
    P.announce(codeOut, text);
  }
  const sentence = (m) => { m = String(m || "").trim(); return m ? m.charAt(0).toUpperCase() + m.slice(1) + (/[.!?]$/.test(m) ? "" : ".") : ""; };
  codeForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (codeBusy) return;
    const digits = codeIn.value.replace(/[\s.\-]/g, "");
    if (!/^[0-9]{9}$/.test(digits)) {
      const n = digits.replace(/[^0-9]/g, "").length;
      codeSay(/[^0-9]/.test(digits) ? "A code has only digits: 9 of them, such as 123 456 789."
        : "A code has 9 digits" + (n ? "; this has " + n : "") + ".", "bad");
      codeIn.focus();
      return;
    }
    const wait = Math.ceil((codeWaitUntil - Date.now()) / 1000);
    if (wait > 0) return codeSay("Too many wrong codes. Wait " + wait + " s and try again.", "bad");
    codeBusy = true;
    codeGo.setAttribute("aria-busy", "true");
    codeSay("Checking the code\u2026", "");
    try {
      const res = await fetch("/api/sockets/" + encodeURIComponent(id) + "/redeem", {
        method: "POST", credentials: "omit", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ code: digits }),
      });
      const j = await res.json().catch(() => null);
      if (res.ok && j && j.view) {
        lastBal = j.view.balance_tokens;   // said here, not again by the balance's own announcement
        render(j.view);
        addPoint(j.view);
        codeIn.value = "";
        const bal = " Balance " + P.money(j.view.balance_tokens) + ".";
        codeSay(j.booked === false ? "This code's " + P.money(j.tokens) + " were added already." + bal
          : "+" + P.money(j.tokens) + " added." + bal, "ok");
      } else {
        if (res.status === 429) {
          const s = (j && j.retry_after_s) || parseInt(res.headers.get("Retry-After"), 10) || 1;
          codeWaitUntil = Date.now() + s * 1000;
        }
        codeSay(sentence(j && (j.message || j.error)) || "The controller answered " + res.status + ". Try again.", "bad");
      }
    } catch (err) {
      codeSay("The controller could not be reached. Check the connection and try again (a code is never added twice).", "bad");
    }
    codeBusy = false;
    codeGo.removeAttribute("aria-busy");
  });

  // emergency credit: offered below a threshold, once until the next top-up repays it (the server decides;
  // the page shows the offer when the live balance drops below the threshold and nothing is owed)
  const em = boot.emergency || {}, emBox = $("emergency"), emText = $("emergency-text"), emGo = $("emergency-go"),
    emOut = $("emergency-out");
  let emOwed = em.owed_tokens || 0, emBusy = false;
  function emergencyShow(view) {
    if (!em.tokens) return;
    const offered = !emOwed && view.balance_tokens < em.below_tokens;
    emBox.hidden = !(offered || emOwed);
    emGo.hidden = !offered;
    emGo.textContent = "Take " + P.money(em.tokens) + " of emergency credit";
    P.setText(emText, emOwed ? "You have " + P.money(emOwed) + " of emergency credit to repay: your next top-up "
      + "repays it first." : offered ? "Below " + P.money(em.below_tokens) + " you may take " + P.money(em.tokens)
      + " now, once; your next top-up repays it first." : "");
  }
  emergencyShow(boot.view);
  emGo.addEventListener("click", async () => {
    if (emBusy) return;
    emBusy = true;
    try {
      const res = await fetch("/api/sockets/" + encodeURIComponent(id) + "/emergency", {
        method: "POST", credentials: "omit", headers: { "Content-Type": "application/json" }, body: "{}",
      });
      const j = await res.json().catch(() => null);
      if (res.ok && j && j.view) {
        emOwed = j.emergency.owed_tokens;
        lastBal = j.view.balance_tokens;
        render(j.view);
        addPoint(j.view);
        P.announce(emOut, "+" + P.money(j.tokens) + " of emergency credit added.");
        emergencyShow(j.view);
      } else {
        P.announce(emOut, sentence(j && j.message) || "The controller answered " + res.status + ".");
      }
    } catch (err) {
      P.announce(emOut, "The controller could not be reached. Check the connection and try again.");
    }
    emBusy = false;
  });

  // chart: power (W, left) and balance (tokens, right) over the last hour, ending now on the controller's
  // clock however few readings there are (right after a restart there are one or two, at the right end)
  let data = [[], [], []];
  let plot = null, skew = 0;
  const box = $("chart"), empty = $("chart-empty"), since = $("chart-since");
  const chartH = (w) => (w < 500 ? 200 : 260);
  const FEW = 40;                                 // fewer readings than this in view: each one is a point
  const now = () => Date.now() / 1000 + skew;     // the controller's time (its views carry it)
  const hhmm = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

  /* The index of a series' latest value; the legend shows it while the pointer is not on the chart. */
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
  /* A few readings are drawn as points (a line needs two); many as a line with a point at the latest. */
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

  function makePlot() {
    if (typeof uPlot === "undefined") return;
    $("chart-card").hidden = false;
    const w = Math.max(200, Math.floor(box.clientWidth));
    const axis = { stroke: "#333", grid: { stroke: "#e4e6ea" }, ticks: { stroke: "#c8ccd2" } };
    const yAxis = { labelSize: 18, labelGap: 0 };
    plot = new uPlot({
      width: w, height: chartH(w),
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: () => span() },
        W: { range: (u, min, max) => [0, Math.max(100, (max || 0) * 1.1)] },
        /* a little more headroom than power's, so a full balance and a full load are not one point */
        tok: { range: (u, min, max) => [Math.min(0, min || 0), Math.max(10, (max || 0) * 1.25)] },
      },
      series: [
        { value: (u, t, s, i) => {
          if (i === null || i === undefined) t = data[0].length ? data[0][data[0].length - 1] : null;
          return t ? P.clock(t) : P.DASH;
        } },
        { label: "Power", scale: "W", stroke: "#0b57d0", width: 2, fill: "rgba(11,87,208,0.08)",
          points: Object.assign({ fill: "#0b57d0" }, points),
          value: legend(1, (v) => P.num(v, 0) + " W") },
        { label: "Balance", scale: "tok", stroke: "#a14000", width: 2,
          points: Object.assign({ fill: "#a14000" }, points),
          value: legend(2, (v) => P.money(v)) },
      ],
      axes: [
        Object.assign({}, axis, { space: 70, values: (u, ts) => ts.map(hhmm) }),
        Object.assign({}, axis, yAxis, { scale: "W", label: "W", size: 44,
          values: (u, vs) => vs.map((v) => P.num(v, 0)) }),
        Object.assign({}, axis, yAxis, { scale: "tok", side: 1, label: P.moneyWord(), size: 52, grid: { show: false },
          values: (u, vs) => vs.map((v) => P.figure(v)) }),
      ],
    }, data, box);
    if (window.ResizeObserver) {
      new ResizeObserver((es) => {
        const cw = Math.floor(es[0].contentRect.width);
        if (cw > 0 && (cw !== plot.width)) plot.setSize({ width: cw, height: chartH(cw) });
      }).observe(box);
    }
    redraw();
    setInterval(redraw, 10000);   // the hour moves on while no reading comes (the controller down)
  }

  /* The last hour, and room at its right end for the latest reading's point (8 px). */
  function span() {
    const t = now(), px = plot ? Math.max(100, plot.over.clientWidth) : 300;
    return [t - histS, t + histS * 8 / px];
  }

  function redraw() {
    let cut = 0;
    const from = now() - histS;
    while (cut < data[0].length && data[0][cut] < from) cut++;
    if (cut) for (const a of data) a.splice(0, cut);
    if (!plot) return;
    const x = span();
    plot.batch(() => {
      plot.setData(data);
      plot.setScale("x", { min: x[0], max: x[1] });
      if (plot.cursor.idx === null || plot.cursor.idx === undefined) plot.setLegend({ idx: null });
    });
    const j = latest(1), k = latest(2), first = data[0].length ? data[0][0] : null;
    empty.hidden = j !== null;
    /* right after a restart the readings fill only the right end of the hour: say where they start */
    P.setText(since, j !== null && first - x[0] > 300 ? "Readings since " + hhmm(first) + "." : "");
    const last = j === null ? "No readings yet."
      : "Latest reading: " + P.num(data[1][j], 0) + " W" + (k === null ? "" : ", " + P.money(data[2][k])) + ".";
    const said = "Chart of power in watts and balance in " + P.moneyWord() + " over the last hour, from " + hhmm(x[0]) + " to "
      + hhmm(now()) + ". " + last;
    if (box.getAttribute("aria-label") !== said) box.setAttribute("aria-label", said);
  }

  function setHistory(h, v) {
    if (!h || !h.t) return;
    data = [h.t.slice(), h.power_w.slice(), h.balance_tokens.slice()];
    addPoint(v);
  }

  function addPoint(v) {
    const t = v && v.updated_at, ts = data[0];
    if (!t) return redraw();
    skew = t - Date.now() / 1000;
    if (!ts.length || t > ts[ts.length - 1]) {
      ts.push(t);
      data[1].push(v.power_w === undefined ? null : v.power_w);
      data[2].push(v.balance_tokens === undefined ? null : v.balance_tokens);
    }
    redraw();
  }

  render(boot.view);
  makePlot();
  addPoint(boot.view);

  // live updates over Socket.IO; re-subscribe on every (re)connect
  if (typeof io === "undefined") return;
  const sock = io();
  P.watchConnection(sock, $("live"));
  sock.on("connect", () => {
    sock.emit("watch", { socket: id }, (ack) => {
      if (ack && ack.ok) {
        showError("");
        render(ack.view);
        setHistory(ack.history, ack.view);
      } else {
        showError("Live updates are unavailable: " + ((ack && ack.error) || "no answer") + ".");
      }
    });
  });
  sock.on("state", (v) => {
    emergencyShow(v);
    if (!v || v.id !== id) return;
    render(v);
    addPoint(v);
  });
})();
