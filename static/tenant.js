/* payg tenant page: live state, balance and readings for one socket; a payment confirmed as it arrives; the one
   action that matters now (emergency credit, top up); top-up helpers and codes; the chart (static/chart.js). */
"use strict";
(function () {
  const P = window.payg;
  const $ = (id) => document.getElementById(id);
  const boot = P.boot();
  const id = boot.socket, topup = boot.topup;
  P.useMoney(boot.page && boot.page.money);
  /* a number as the plural forms count it: a fraction is plural, as payg/webkit/money.py `text` counts tokens */
  const count = (x) => (Number.isInteger(x) ? Math.abs(x) : 2);

  /* every word this script shows, in the page's language (static/common.js `_`, `n_`); each text is written out in
     its call, where `make messages` finds it */
  const _ = P._, n_ = P.n_;
  const T = {
    on: _("On"), off: _("Off"),
    unit: (n) => n_("token", "tokens", n),
    creditReceived: (balance) => _("Credit received. Balance {balance}.", { balance }),
    debtPlan: _("With your repayment plan, part of each top-up repays it; the rest is credit you can use at once."),
    debtNext: _("Your next top-ups repay it."),
    hoursLeft: (h) => n_("Less than {hours} hour of credit left at the present power.",
      "Less than {hours} hours of credit left at the present power.", count(h), { hours: P.num(h, 2) }),
    notPaid: _("Not paid for yet."), outOfCredit: _("Out of credit."), lowCredit: _("Low credit."),
    topUpToStart: _("Top up to turn the power on."),
    topUpSoon: _("Top up soon to keep the power on."),
    topUpToAdd: _("Top up to add credit."),
    friendly: _("The power stays on for now (friendly-credit hours), and what it uses is owed: top up to keep it on."),
    emergencyOrTopUp: _("Take emergency credit now, or top up to turn the power back on."),
    topUpToRestart: _("Top up to turn the power back on."),
    why: { landlordOff: _("held off by the landlord"), offline: _("meter offline"), alarm: _("meter alarm"),
      vacant: _("not paid for yet: a top-up turns it on"), out: _("out of credit"),
      usedUp: _("credit used up (what is left is kept for the next top-up)") },
    both: (first, then) => _("{first}; {then}", { first, then }),
    paid: { deposit: _("Payment received:"), code: _("Top-up code accepted:"),
      "manual credit": _("Credit added by your landlord:") },
    paidText: (amount, balance) => _("+{amount}. Balance {balance}.", { amount, balance }),
    liveUnknown: _("Live updates are unavailable: the controller does not know this socket."),
    liveNoAnswer: _("Live updates are unavailable: the controller did not answer."),
    qrAny: _("QR code to pay this socket"),
    qrAmount: (amount) => _("QR code to pay {amount} to this socket", { amount }),
    copied: _("Copied"),
    selected: _("Address selected: copy it with your device's copy command"),
    codeDigitsOnly: _("A code has only digits: 9 of them, such as 123 456 789."),
    codeLength: (n) => (n ? _("A code has 9 digits; this one has {n}.", { n }) : _("A code has 9 digits.")),
    codeWait: (seconds) => _("Too many wrong codes. Wait {seconds} s and try again.", { seconds }),
    codeChecking: _("Checking the code\u2026"),
    codeAgain: (amount, balance) => _("This code's {amount} were added already. Balance {balance}.", { amount, balance }),
    codeAdded: (amount, balance) => _("+{amount} added. Balance {balance}.", { amount, balance }),
    /* a refused code, by the API's reason: payg/services/codes.py REFUSALS, word for word */
    refused: {
      used: _("This code was used already, or an older code was entered after newer ones. Each code adds credit once."),
      invalid: _("This is not a code for this socket. Check the digits, and that the code is for this socket."),
      unsupported: _("This code is not a top-up code. Ask your landlord for a top-up code."),
      locked: _("Too many wrong codes were entered for this socket. Ask your landlord to unlock code entry."),
      malformed: _("A code has only digits: 9 of them, such as 123 456 789."),
    },
    codesOff: _("Top-up codes are off on this controller."),
    answered: (status) => _("The controller answered {status}.", { status }),
    answeredTryAgain: (status) => _("The controller answered {status}. Try again.", { status }),
    codeUnreachable: _("The controller could not be reached. Check the connection and try again (a code is never added twice)."),
    unreachable: _("The controller could not be reached. Check the connection and try again."),
    emergencyTake: (amount) => _("Take {amount} of emergency credit", { amount }),
    emergencyOwed: (amount) => _("You have {amount} of emergency credit to repay: your next top-up repays it first.",
      { amount }),
    emergencyOffer: (below, amount) => _("Below {below} you may take {amount} now, once; your next top-up repays it first.",
      { below, amount }),
    emergencyAdded: (amount) => _("+{amount} of emergency credit added.", { amount }),
    /* emergency credit refused, by the API's reason (payg/services/emergency.py) */
    emergencyRefused: {
      emergency_off: _("Emergency credit is not offered on this controller."),
      emergency_owed: _("Emergency credit was taken already; it is offered again once the next top-up has repaid it."),
      emergency_not_yet: (below) => _("Emergency credit is offered when less than {below} are left.", { below }),
    },
  };

  // the payment the page knows of: a newer one is confirmed as it arrives
  let seenCredit = boot.view.last_credit ? boot.view.last_credit.id : 0;
  function confirmPayment(v) {
    const c = v.last_credit;
    if (!c || c.id <= seenCredit) return;
    seenCredit = c.id;
    P.setText($("paid-h"), T.paid[c.method] || T.paid.deposit);
    P.setText($("paid-t"), T.paidText(P.money(c.tokens), P.money(v.balance_tokens)));
    $("paid-r").href = "/s/" + encodeURIComponent(id) + "/receipts/" + c.id;
    $("paid").hidden = false;
  }

  // the socket's state
  let lastBal = null;
  function render(v) {
    confirmPayment(v);
    P.setText($("bal"), P.figure(v.balance_tokens));
    const balUnit = document.querySelector("#bal + .unit");   // tokens only: a currency's sign is in the figure
    if (balUnit) P.setText(balUnit, T.unit(count(v.balance_tokens)));
    /* announce top-ups to screen readers, not every tick's small decrease */
    if (lastBal !== null && v.balance_tokens > lastBal + 0.5) P.setText($("bal-sr"), T.creditReceived(P.money(v.balance_tokens)));
    lastBal = v.balance_tokens;
    /* what is owed; with a repayment plan a top-up repays only part of it, so credit and debt can both be there */
    $("debt").hidden = !(v.debt > 0);
    P.setText($("debt-v"), P.figure(v.debt));
    if ($("debt-u")) P.setText($("debt-u"), T.unit(count(v.debt)));
    P.setText($("debt-t"), v.balance > 0 ? T.debtPlan : T.debtNext);
    P.setText($("eleft"), P.wh(v.energy_left_wh));
    P.setText($("tleft"), v.time_left_s === null || v.time_left_s === undefined ? P.DASH
      : (v.time_left_s < 60 ? "" : "\u2248 ") + P.dur(v.time_left_s));
    /* out of credit: the power is already off, so "top up soon" would be the wrong advice; the low-credit warning
       itself is the server's (it fires when the credit runs low through use, never right after a top-up) */
    const out = v.balance_tokens <= 0 || v.credit_exhausted;
    const h = v.credit_warning_h;
    $("low").hidden = !v.low_credit;
    $("low").className = "banner " + (out ? "bad" : "warn");
    P.setText($("low-h"), v.vacant ? T.notPaid : out ? T.outOfCredit : T.lowCredit);
    P.setText($("low-t"), v.override === "off" && (out || v.vacant) ? T.topUpToAdd
      : v.vacant ? T.topUpToStart
      : !out ? (h === null || h === undefined ? "" : T.hoursLeft(h) + " ") + T.topUpSoon
      /* on although out of credit: a friendly-credit period keeps it on, and the usage becomes debt */
      : v.relay === "on" ? T.friendly
      : emergencyOffered(v) ? T.emergencyOrTopUp
      : T.topUpToRestart);

    const on = v.relay === "on";
    $("relay").className = "pill big-pill " + (on ? "ok" : "off");
    P.setText($("relay-t"), on ? T.on : T.off);
    const why = [];
    if (v.override === "off") why.push(T.why.landlordOff);
    if (v.status === "offline") why.push(T.why.offline);
    else if (v.status === "alarm") why.push(T.why.alarm);
    if (!on && v.vacant) why.push(T.why.vacant);
    else if (!on && v.balance_tokens <= 0) why.push(T.why.out);
    else if (!on && v.credit_exhausted) why.push(T.why.usedUp);
    const w = why.length ? why.reduce(T.both) : "";
    P.setText($("why"), w.charAt(0).toUpperCase() + w.slice(1));
    $("why").hidden = !w;

    P.setText($("pw"), P.num(v.power_w, 0));
    P.setText($("vv"), P.num(v.voltage_v, 1, true));
    P.setText($("ca"), P.num(v.current_a, 2, true));
    P.setText($("today"), P.wh(v.energy_today_wh));
    emergencyShow(v);
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
    qr.alt = n ? T.qrAmount(P.money(+n)) : T.qrAny;
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
    said(await P.copyText(addr) === "copied" ? T.copied : T.selected);
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
  codeForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (codeBusy) return;
    const digits = codeIn.value.replace(/[\s.\-]/g, "");
    if (!/^[0-9]{9}$/.test(digits)) {
      codeSay(/[^0-9]/.test(digits) ? T.codeDigitsOnly : T.codeLength(digits.replace(/[^0-9]/g, "").length), "bad");
      codeIn.focus();
      return;
    }
    const wait = Math.ceil((codeWaitUntil - Date.now()) / 1000);
    if (wait > 0) return codeSay(T.codeWait(wait), "bad");
    codeBusy = true;
    codeGo.setAttribute("aria-busy", "true");
    codeSay(T.codeChecking, "");
    try {
      const res = await fetch("/api/sockets/" + encodeURIComponent(id) + "/redeem", {
        method: "POST", credentials: "omit", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ code: digits }),
      });
      const j = await res.json().catch(() => null);
      if (res.ok && j && j.view) {
        lastBal = j.view.balance_tokens;   // said here, not again by the balance's own announcement
        render(j.view);
        chart && chart.push(j.view);
        codeIn.value = "";
        const bal = P.money(j.view.balance_tokens);
        codeSay(j.booked === false ? T.codeAgain(P.money(j.tokens), bal) : T.codeAdded(P.money(j.tokens), bal), "ok");
      } else {
        /* the page's words, chosen by the API's reason (its message is in English) */
        let said = j && T.refused[j.reason];
        if (res.status === 429) {
          const s = (j && j.retry_after_s) || parseInt(res.headers.get("Retry-After"), 10) || 1;
          codeWaitUntil = Date.now() + s * 1000;
          said = T.codeWait(s);
        } else if (!said && res.status === 404) {
          said = T.codesOff;
        }
        codeSay(said || T.answeredTryAgain(res.status), "bad");
      }
    } catch (err) {
      codeSay(T.codeUnreachable, "bad");
    }
    codeBusy = false;
    codeGo.removeAttribute("aria-busy");
  });

  // emergency credit: offered below a threshold, once until the next top-up repays it (the server decides;
  // the page shows the offer when the live balance drops below the threshold and nothing is owed). While it is
  // offered it is the first action and the top-up button the second.
  const em = boot.emergency || {}, emBox = $("emergency"), emText = $("emergency-text"), emGo = $("emergency-go"),
    emOut = $("emergency-out"), goTopup = $("go-topup");
  let emOwed = em.owed_tokens || 0, emBusy = false;
  const emergencyOffered = (v) => !!em.tokens && !emOwed && v.balance_tokens < em.below_tokens;
  function emergencyShow(view) {
    const offered = emergencyOffered(view);
    goTopup.className = "btn go-topup" + (offered ? "" : " primary");
    if (!em.tokens) return;
    emBox.hidden = !(offered || emOwed);
    emGo.hidden = !offered;
    P.setText(emGo, T.emergencyTake(P.money(em.tokens)));
    P.setText(emText, emOwed ? T.emergencyOwed(P.money(emOwed))
      : offered ? T.emergencyOffer(P.money(em.below_tokens), P.money(em.tokens)) : "");
  }
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
        chart && chart.push(j.view);
        P.announce(emOut, T.emergencyAdded(P.money(j.tokens)));
      } else {
        const refused = j && T.emergencyRefused[j.reason];
        P.announce(emOut, typeof refused === "function" ? refused(P.money(em.below_tokens)) : refused
          || T.answered(res.status));
      }
    } catch (err) {
      P.announce(emOut, T.unreachable);
    }
    emBusy = false;
  });

  render(boot.view);
  // the chart: the journal's history over the chosen span, the live readings appended (static/chart.js)
  const chart = window.paygChart && typeof uPlot !== "undefined"
    ? window.paygChart.mount($("chart"), id, { span: "hour", spans: $("spans"), empty: $("chart-empty"),
      since: $("chart-since"), card: $("chart-card") })
    : null;
  if (chart) chart.push(boot.view);

  // live updates over Socket.IO; re-subscribe on every (re)connect
  if (typeof io === "undefined") return;
  const sock = io();
  P.watchConnection(sock, $("live"));
  sock.on("connect", () => {
    sock.emit("watch", { socket: id }, (ack) => {
      if (ack && ack.ok) {
        showError("");
        render(ack.view);
        if (chart) {
          chart.live(ack.history);
          chart.push(ack.view);
        }
      } else {
        showError(ack && ack.error ? T.liveUnknown : T.liveNoAnswer);
      }
    });
  });
  sock.on("state", (v) => {
    if (!v || v.id !== id) return;
    render(v);
    if (chart) chart.push(v);
  });
})();
