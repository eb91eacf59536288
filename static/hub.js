/* payg hub: the fleet table, patched in place on each push from /hub (Socket.IO); without Socket.IO it asks
   /api/fleet every two seconds. Filters and totals are computed here over the rows the hub has seen. */
"use strict";
(function () {
  const P = window.payg, _ = P._, $ = (id) => document.getElementById(id);
  const boot = P.boot();
  const rows = new Map();      // "controller/socket" -> {r: row, tr, el}
  const ctls = new Map();      // name -> controller
  const cmds = new Map();      // request_id -> command
  let events = [], fCtl = "", fRelay = "", fText = "";
  const AVAIL = { online: _("Online"), offline: _("Offline") };
  const ACTION = { force_off: _("Force off"), automatic: _("Automatic"), credit: _("Credit") };
  /* a row's money: its controller's currency (the state's "currency"; none: tokens), written for the hub's locale */
  const unitOf = (code) => (code ? { currency: code, locale: boot.locale } : null);
  /* the unit of a command's or an event's amount: its socket's (or else its controller's) as its states say */
  function unitAt(controller, socket) {
    const rec = rows.get(controller + "/" + socket) ||
      Array.from(rows.values()).find((x) => x.r.controller === controller);
    return unitOf(rec && rec.r.currency);
  }
  /* a total over rows of one currency; "—" over several */
  function total(list, x) {
    const codes = new Set(list.map((r) => r.currency || null));
    return codes.size > 1 ? P.DASH : P.figure(x, unitOf(codes.size ? codes.values().next().value : null));
  }

  function h(parent, tag, cls, text) {
    const e = parent.appendChild(document.createElement(tag));
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function pill(el, cls, text) {
    el.className = "pill " + cls;
    el.textContent = "";
    h(el, "span", "dot").setAttribute("aria-hidden", "true");
    el.appendChild(document.createTextNode(text));
  }
  /* each cell's column name, shown above its value when a table becomes cards on a phone */
  const columns = (id) => Array.from(document.querySelectorAll("#" + id + " thead th"), (th) => th.textContent.trim());
  const COLS = { tbl: columns("tbl"), ctls: columns("ctls") };
  function labelled(tr, table) {
    Array.from(tr.children).forEach((td, i) => { if (i > 0) td.dataset.label = COLS[table][i]; });
  }
  const shown = (r) => (!fCtl || r.controller === fCtl) && (!fRelay || r.relay === fRelay) &&
    (!fText || (r.key + "\n" + (r.name || "")).toLowerCase().includes(fText));
  /* the actions that apply to a socket now: a socket held off can go back to automatic, any other can be forced
     off; a credit always applies */
  const applies = (r, act) => (act === "automatic" ? r.override === "off" : act === "force_off" ? r.override !== "off"
    : true);

  /* one row per socket, built once and patched */
  function build(key) {
    const tr = document.createElement("tr"), el = {};
    tr.dataset.key = key;
    let td = h(tr, "td");
    el.socket = h(td, "span", "name");   // the socket's name as its controller publishes it (its id when none)
    el.ctl = h(td, "small", "id");       // controller/socket
    td = h(tr, "td");
    el.relay = h(td, "span");
    el.override = h(td, "small");
    td = h(tr, "td", "num");
    el.bal = h(td, "span");
    el.debt = h(td, "small");
    el.power = h(tr, "td", "num");
    el.meter = h(tr, "td");
    el.at = h(tr, "td");
    td = h(tr, "td", "actions");
    for (const a of ["force_off", "automatic", "credit"]) {
      const b = h(td, "button", "btn small", ACTION[a] + (a === "credit" ? "\u2026" : ""));
      b.type = "button";
      b.dataset.act = a;
    }
    labelled(tr, "tbl");
    return { tr, el };
  }
  function patch(rec) {
    const r = rec.r, el = rec.el, c = ctls.get(r.controller) || {};
    P.setText(el.socket, r.name || r.socket);
    P.setText(el.ctl, r.key);
    pill(el.relay, "st-" + (r.relay || "off"), r.relay === "on" ? _("On") : r.relay === "off" ? _("Off") : P.DASH);
    P.setText(el.override, r.override === "off" ? _("forced off") : "");
    P.setText(el.bal, P.figure(r.balance_tokens, unitOf(r.currency)));
    P.setText(el.debt, r.debt ? _("debt {amount}", { amount: P.figure(r.debt_tokens, unitOf(r.currency)) })
      : r.credit_exhausted ? _("used up") : "");
    P.setText(el.power, r.power_w === null || r.power_w === undefined ? P.DASH : P.num(r.power_w) + " W");
    P.setText(el.meter, r.meter || P.DASH);
    P.setText(el.at, r.at ? P.clock(r.at) : P.DASH);
    rec.tr.classList.toggle("ctl-offline", c.status === "offline");
    for (const b of rec.tr.querySelectorAll("button")) {
      b.hidden = !applies(r, b.dataset.act);
      b.disabled = c.status === "offline";
    }
  }
  function upsert(r) {
    let rec = rows.get(r.key);
    if (!rec) { rec = build(r.key); rows.set(r.key, rec); }
    rec.r = r;
    patch(rec);
  }

  function totals(list) {
    const t = { sockets: 0, on: 0, off: 0, power: 0, bal: 0 };
    for (const r of list) {
      t.sockets += 1;
      t.on += r.relay === "on" ? 1 : 0;
      t.off += r.relay === "off" ? 1 : 0;
      t.power += typeof r.power_w === "number" ? r.power_w : 0;
      t.bal += typeof r.balance_tokens === "number" ? r.balance_tokens : 0;
    }
    return t;
  }
  /* a totals or controller row; each cell but the first labelled with its column (the cards on a phone) */
  function cells(tr, values, table) {
    tr.textContent = "";
    values.forEach((v, i) => {
      const td = h(tr, i === 0 ? "th" : "td", i > 1 ? "num" : "", typeof v === "string" ? v : null);
      if (i === 0) td.scope = "row";
      else td.dataset.label = COLS[table][i];
      if (v && v.pill) pill(h(td, "span"), v.pill, v.text);
    });
  }

  function render() {
    const tbody = $("rows"), list = [];
    const keys = Array.from(rows.keys()).sort();
    tbody.textContent = "";
    for (const k of keys) {
      const rec = rows.get(k);
      if (shown(rec.r)) { tbody.appendChild(rec.tr); list.push(rec.r); }
    }
    const t = totals(list);
    cells($("tot"), [P.n_("{n} socket", "{n} sockets", t.sockets, { n: t.sockets }), _("{on} on, {off} off", t),
      total(list, t.bal), P.num(t.power) + " W", "", "", ""], "tbl");
    P.setText($("count"), list.length === rows.size ? P.n_("{n} socket", "{n} sockets", rows.size, { n: rows.size })
      : _("{shown} of {all} sockets", { shown: list.length, all: rows.size }));
    // controllers, with the totals of their shown sockets
    const cb = $("ctl-rows"), names = Array.from(ctls.keys()).sort();
    cb.textContent = "";
    for (const name of names) {
      const mine = list.filter((r) => r.controller === name), c = ctls.get(name), ct = totals(mine);
      const tr = h(cb, "tr");
      tr.dataset.name = name;
      cells(tr, [name, { pill: "av-" + (c.status || "unknown"), text: AVAIL[c.status] || _("Unknown") },
        String(ct.sockets), String(ct.on), String(ct.off), P.num(ct.power) + " W", total(mine, ct.bal)], "ctls");
    }
    cells($("ctl-tot"), [P.n_("{n} controller", "{n} controllers", names.length, { n: names.length }), "", String(t.sockets), String(t.on), String(t.off),
      P.num(t.power) + " W", total(list, t.bal)], "ctls");
    const sel = $("fc"), want = ["", ...names];
    if (Array.from(sel.options, (o) => o.value).join("\n") !== want.join("\n")) {
      sel.textContent = "";
      for (const n of want) h(sel, "option", "", n || _("All")).value = n;
      sel.value = names.includes(fCtl) ? fCtl : "";
    }
    const q = new URLSearchParams();
    if (fCtl) q.set("controller", fCtl);
    if (fRelay) q.set("relay", fRelay);
    if (fText) q.set("q", fText);
    $("csv").href = "/fleet.csv" + (q.toString() ? "?" + q : "");
    renderCommands();
    renderEvents();
  }

  function renderCommands() {
    const tb = $("cmd-rows"), list = Array.from(cmds.values()).sort((a, b) => b.sent_at - a.sent_at).slice(0, 50);
    $("cmd-none").hidden = list.length > 0;
    tb.textContent = "";
    for (const c of list) {
      const tr = h(tb, "tr");
      h(tr, "td", "", P.clock(c.sent_at));
      h(tr, "td", "", c.controller + "/" + c.socket);
      const what = c.command === "credit" ? " " + P.figure(c.tokens, unitAt(c.controller, c.socket)) + " (" + c.reason + ")"
        : "";
      h(tr, "td", "", ACTION[c.command] + what);
      const td = h(tr, "td");
      const word = { pending: _("Waiting\u2026"), ok: c.booked === false ? _("Done (booked before)") : _("Done"),
        refused: _("Refused"), timeout: _("No answer") }[c.status] || c.status;
      h(td, "span", "res-" + c.status, c.late ? _("{result} (late)", { result: word }) : word);
      if (c.error) h(td, "small", "", " " + c.error);
    }
  }
  function renderEvents() {
    const ul = $("events");
    ul.textContent = "";
    for (const e of events.slice(0, 50)) {
      const li = h(ul, "li");
      h(li, "time", "", P.clock(e.at || e.received_at));
      li.appendChild(document.createTextNode(e.controller + "/" + (e.socket || P.DASH) + ": " + e.kind +
        (e.amount !== undefined ? " " + P.figure(e.amount, unitAt(e.controller, e.socket)) : "")));
    }
  }

  /* a message from the hub: the whole fleet (full) or what changed */
  function apply(m) {
    if (!m) return;
    if (m.full) { rows.clear(); ctls.clear(); cmds.clear(); events = []; }
    for (const c of m.controllers || []) ctls.set(c.name, c);
    for (const r of m.rows || []) upsert(r);
    for (const k of m.removed || []) rows.delete(k);
    for (const c of m.commands || []) cmds.set(c.request_id, c);
    const seen = new Set(events.map((e) => e.id));
    events = (m.events || []).filter((e) => !seen.has(e.id)).concat(events).slice(0, 200);
    for (const rec of rows.values()) patch(rec);
    $("broker").hidden = !m.broker || m.broker.connected;
    if (m.broker && !m.broker.connected) {
      P.setText($("broker"), m.broker.error
        ? _("The hub is not connected to the broker (%(error)s): what is shown is what it saw last.").replace("%(error)s", m.broker.error)
        : _("The hub is not connected to the broker: what is shown is what it saw last."));
    }
    const ec = m.events_complete;
    $("gaps").hidden = !ec || ec.complete;
    if (ec && !ec.complete) {
      P.setText($("gaps"), P.n_("{n} event is missing here: the hub has asked its controller to send it again.",
        "{n} events are missing here: the hub has asked their controllers to send them again.", ec.missing,
        { n: ec.missing }));
    }
    render();
  }

  // filters
  $("fc").addEventListener("change", (e) => { fCtl = e.target.value; render(); });
  $("fr").addEventListener("change", (e) => { fRelay = e.target.value; render(); });
  $("fq").addEventListener("input", (e) => { fText = e.target.value.trim().toLowerCase(); render(); });

  // actions
  const msg = $("msg");
  function say(text, bad) {
    msg.className = "banner " + (bad ? "bad" : "ok");
    P.setText(msg, text);
    msg.hidden = false;
  }
  async function send(r, command, extra) {
    const body = Object.assign({ controller: r.controller, socket: r.socket, command, request_id: P.requestId() }, extra);
    const res = await fetch("/api/commands", {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRFToken": P.csrf() },
    }).catch(() => { throw new Error(_("the hub could not be reached; try again.")); });
    if (res.status === 401) { $("expired").hidden = false; throw new Error(_("you are logged out.")); }
    const j = await res.json().catch(() => null);
    if (!res.ok) throw new Error((j && (j.message || j.error)) || _("the hub answered {status}.", { status: res.status }));
    cmds.set(j.request_id, j);
    renderCommands();
    say(_("{socket}: {action} sent; the result shows under \u201cActions sent\u201d.", { socket: r.key, action: ACTION[command] }));
    return j;
  }
  let target = null, opener = null;
  $("rows").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-act]"), rec = b && rows.get(b.closest("tr").dataset.key);
    if (!rec) return;
    if (b.dataset.act === "credit") {
      target = rec.r;
      opener = b;
      P.setText($("credit-who"), _("{socket} \u00b7 balance {amount}", { socket: rec.r.key,
        amount: P.money(rec.r.balance_tokens, unitOf(rec.r.currency)) }));
      /* typed in tokens, or in the controller's currency's major unit (12.34); sent as its minor unit */
      const u = unitOf(rec.r.currency);
      P.setText(document.querySelector('label[for="credit-tok"]'), u ? _("Amount in {currency}", { currency: u.currency }) : _("Tokens"));
      $("credit-tok").step = u ? P.toMajor(1, u) : "1";
      $("credit-err").hidden = true;
      $("credit-f").reset();
      $("credit").showModal();
      return;
    }
    send(rec.r, b.dataset.act, {}).catch((err) => say(rec.r.key + ": " + err.message, true));
  });
  $("credit-f").addEventListener("submit", async (e) => {
    e.preventDefault();
    const u = unitOf(target.currency), tokens = P.toUnits($("credit-tok").value, u),
      reason = $("credit-why").value.trim();
    if (!Number.isInteger(tokens) || tokens === 0 || !reason) {
      $("credit-err").hidden = false;
      P.setText($("credit-err"), u ? _("An amount in {currency} (not 0) and a reason, please.", { currency: u.currency })
        : _("A whole number of tokens (not 0) and a reason, please."));
      return;
    }
    const go = $("credit-go");
    go.setAttribute("aria-busy", "true");
    go.disabled = true;
    try {
      await send(target, "credit", { tokens, reason });
      $("credit").close();
    } catch (err) {
      $("credit-err").hidden = false;
      P.setText($("credit-err"), err.message);
    }
    go.removeAttribute("aria-busy");
    go.disabled = false;
  });
  document.addEventListener("click", (e) => {
    const c = e.target.closest("[data-close]");
    if (c) c.closest("dialog").close();
  });
  $("credit").addEventListener("close", () => { if (opener && opener.isConnected) opener.focus(); opener = null; });

  // start: the boot snapshot, then live pushes (or polls)
  apply(Object.assign({}, boot.snapshot, { full: true }));
  $("filters").hidden = false;
  function poll() {
    fetch("/api/fleet", { credentials: "same-origin" })
      .then((res) => { if (res.status === 401) { $("expired").hidden = false; return null; } return res.json(); })
      .then((j) => { if (j) apply(Object.assign(j, { full: true })); })
      .catch(() => null)
      .finally(() => { if ($("expired").hidden) setTimeout(poll, 2000); });
  }
  if (typeof io === "undefined") { poll(); return; }
  const sock = P.landlordSocket("/hub");
  sock.on("fleet", apply);
})();
