/* payg: a socket's landlord page. Its state follows the landlord namespace's pushes (the overview's), and its
   actions show only while they apply: "Force off" or "Back to automatic", "Acknowledge alarms" while there are any. */
"use strict";
(function () {
  const P = window.payg, _ = P._, L = window.paygLandlord, $ = (id) => document.getElementById(id);
  /* the words, in the page's language (static/common.js `_`) */
  const STATUS = { on: _("On"), off: _("Off"), offline: _("Offline"), alarm: _("Alarm"), vacant: _("Vacant") };
  const WHY = {
    held: _("held off by the landlord"), offline: _("meter offline"), alarm: _("meter alarm"),
    vacant: _("not paid for yet: a top-up turns it on"), noCredit: _("out of credit"),
    usedUp: _("credit used up (what is left is kept for the next top-up)"),
  };
  const boot = P.boot();
  P.useMoney(boot.page && boot.page.money);
  const rec = { id: boot.socket, v: boot.view };

  function reason(v) {
    const on = v.relay === "on", why = [];
    if (v.override === "off") why.push(WHY.held);
    if (v.status === "offline") why.push(WHY.offline);
    else if (v.status === "alarm") why.push(WHY.alarm);
    if (!on && v.status === "vacant") why.push(WHY.vacant);
    else if (!on && v.balance_tokens <= 0) why.push(WHY.noCredit);
    else if (!on && v.credit_exhausted) why.push(WHY.usedUp);
    const w = why.length ? why.reduce((first, then) => _("{first}; {then}", { first, then })) : "";
    return w.charAt(0).toUpperCase() + w.slice(1);
  }

  const buttons = {};
  for (const b of document.querySelectorAll("#actions button[data-act]")) buttons[b.dataset.act] = b;
  function show(v) {
    rec.v = v;
    P.setText($("relay"), v.relay === "on" ? _("On") : _("Off"));
    $("status").className = "pill st-" + v.status;
    P.setText($("status-t"), STATUS[v.status] || String(v.status));
    const w = reason(v);
    P.setText($("why"), w);
    $("why").hidden = !w;
    P.setText($("bal"), P.money(v.balance_tokens));
    P.setText($("debt"), P.money(v.debt || 0));
    P.setText($("pw"), v.power_w == null ? P.DASH : P.num(v.power_w) + " W");
    P.setText($("ov"), v.override === "off" ? _("Forced off") : _("Automatic"));
    P.setText($("today"), P.wh(v.energy_today_wh));
    P.setText($("alarms"), String(v.alarms || 0));
    const focused = document.activeElement;
    buttons.off.hidden = v.override === "off";
    buttons.auto.hidden = v.override !== "off";
    buttons.ack.hidden = !(v.alarms > 0);
    if (focused === buttons.off && focused.hidden) buttons.auto.focus();   // the one that replaced it
    else if (focused === buttons.auto && focused.hidden) buttons.off.focus();
    if (!(v.alarms > 0)) {   // acknowledged: the events listed as open are not any more
      for (const tr of document.querySelectorAll("#ev-rows tr.open-alarm")) {
        tr.classList.remove("open-alarm");
        const tag = tr.querySelector(".tag.bad");
        if (tag) { tag.className = "tag seen"; tag.textContent = _("acknowledged"); }
      }
    }
  }
  show(rec.v);

  const A = L.actions(show);
  document.getElementById("actions").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-act]");
    if (!b) return;
    const a = b.dataset.act;
    if (a === "off") A.act(rec, "override", { mode: "off" }, _("forced off."));
    else if (a === "auto") A.act(rec, "override", { mode: "auto" }, _("back to automatic."));
    else if (a === "ack") A.act(rec, "alarms/ack", {}, _("alarms acknowledged."));
    else if (a === "adj") A.openAdjust(rec, b);
    else if (a === "code") A.openCode(rec, b);
  });

  /* the chart: a day of the journal's history by default (a landlord looks back further than a tenant) */
  const chart = window.paygChart && typeof uPlot !== "undefined"
    ? window.paygChart.mount($("chart"), rec.id, { span: "day", spans: $("spans"), empty: $("chart-empty"),
      since: $("chart-since"), card: $("chart-card") })
    : null;

  /* live: the landlord namespace sends every socket's view on connecting, then those that changed */
  if (typeof io === "undefined") return;
  const sock = P.landlordSocket("/landlord");
  sock.on("connect", () => { $("expired").hidden = true; });
  sock.on("states", (m) => {
    const v = m && Array.isArray(m.views) && m.views.find((x) => x.id === rec.id);
    if (!v) return;
    show(v);
    if (chart) chart.push(v);
    P.setText($("at"), _("Updated {time}", { time: P.clock(m.at || Date.now() / 1000) }));
  });
})();
