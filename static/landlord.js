/* payg landlord page: one live table of every socket, built once and patched cell by cell on each push. */
"use strict";
(function () {
  const P = window.payg, $ = (id) => document.getElementById(id);
  const boot = P.boot(), tbody = $("rows");
  P.useMoney(boot.page && boot.page.money);
  const recs = new Map();   // id -> {id, v: view, tr, el: {key: element}, t: {key: text shown}}
  let order = [], sortKey = "name", sortDir = 1, fText = "", fStatus = "", sortDirty = false, filterDirty = false;
  let now = Date.now() / 1000;
  const STATUS = { on: "On", off: "Off", offline: "Offline", alarm: "Alarm", vacant: "Vacant" };
  const RANK = { alarm: 0, offline: 1, off: 2, on: 3 };
  const FIELD = { name: "name", balance: "balance_tokens", power: "power_w", today: "energy_today_wh",
    month: "energy_month_wh", revenue: "revenue_month_tokens", topup: "last_topup_at" };
  const key = (v) => (sortKey === "status" ? (v.status in RANK ? RANK[v.status] : 9) : v[FIELD[sortKey]]);
  const coll = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  const label = (r) => r.v.name || r.id;
  /* the flag on a socket off for lack of credit longer than [protections] flag_off_hours in the last 7 days */
  const helpNote = $("help-note"), HELP_TITLE = helpNote.dataset.title;
  const offH = (h) => (h >= 1 ? Math.floor(h) + " h" : h > 0 ? Math.round(h * 60) + " min" : "< 3 min");

  function h(parent, tag, cls, text) {
    const e = parent.appendChild(document.createElement(tag));
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }
  /* each cell's column name, shown above its value when the table becomes cards on a phone */
  const columns = Array.from(document.querySelectorAll("#tbl thead th"), (th) => th.textContent.trim());
  function labelled(td, col) {
    td.dataset.label = columns[col];
    return td;
  }
  function build(v) {
    const tr = document.createElement("tr"), el = { row: tr }, name = v.name || v.id;
    tr.dataset.id = v.id;
    let td = h(tr, "td");
    el.name = h(td, "a");
    el.name.href = "/s/" + encodeURIComponent(v.id);
    h(td, "small", "id", v.id);
    td = h(tr, "td");
    el.stc = h(td, "span");
    h(el.stc, "span", "dot").setAttribute("aria-hidden", "true");
    el.st = h(el.stc, "span");
    el.help = h(td, "span", "flag needs-help");
    el.help.title = HELP_TITLE;
    el.help.hidden = true;
    el.stx = h(td, "small");
    td = labelled(h(tr, "td", "num"), 2);
    el.bal = h(td, "span");
    el.balx = h(td, "small");
    ["pw", "today", "month", "rev"].forEach((k, i) => { el[k] = labelled(h(tr, "td", "num"), 3 + i); });
    td = labelled(h(tr, "td"), 7);
    el.tu = h(td, "span");
    el.tux = h(td, "small");
    td = h(tr, "td", "actions");
    for (const [act, text] of [["ov", ""], ["adj", "Credit/debit\u2026"], ["code", "Make a code\u2026"], ["qr", "QR"],
      ["ack", "Acknowledge"]]) {
      const b = h(td, "button", "btn small");
      b.type = "button";
      b.dataset.act = act;
      el[act] = act === "ov" ? h(b, "span") : b;
      if (text) b.textContent = text;
      h(b, "span", "sr-only", " " + name);   // "Force off Kitchen" for screen readers
    }
    return { id: v.id, v: null, tr, el, t: {} };
  }

  function texts(v) {
    const d = [];
    if (v.override === "off") d.push("forced off");
    if (v.alarms > 0) d.push(v.alarms === 1 ? "1 alarm" : v.alarms + " alarms");
    if (v.alarm_detail) d.push(v.alarm_detail);
    else if (v.meter && v.meter !== "ok" && v.meter !== "offline") d.push(String(v.meter).replace(/_/g, " "));
    if (v.meter_error) d.push("meter: " + v.meter_error);
    if (v.relay_error) d.push("relay: " + v.relay_error);
    return {
      row: "st-" + v.status + (v.low_credit ? " low" : ""),
      name: v.name || v.id,
      stc: "pill st-" + v.status,
      st: STATUS[v.status] || String(v.status),
      help: v.needs_help ? "Off " + offH(v.off_for_credit_h_7d) + " in 7 days" : "",
      stx: d.join(" \u00b7 "),
      bal: P.figure(v.balance_tokens),
      balx: v.debt > 0 ? "debt " + P.figure(v.debt) : v.balance_tokens <= 0 ? "no credit" : v.credit_exhausted ? "used up"
        : v.low_credit ? "low credit" : "",
      pw: v.power_w == null ? P.DASH : P.num(v.power_w) + " W",
      today: P.wh(v.energy_today_wh),
      month: P.wh(v.energy_month_wh),
      rev: P.figure(v.revenue_month_tokens),
      tu: P.ago(v.last_topup_at, now),
      tux: v.last_topup_at && v.last_topup_tokens ? "+" + P.money(v.last_topup_tokens) : "",
      ov: v.override === "off" ? "Automatic" : "Force off",
      ack: v.alarms > 0 ? "1" : "",
    };
  }

  function upsert(v) {
    let r = recs.get(v.id);
    if (!r) {
      recs.set(v.id, (r = build(v)));
      tbody.appendChild(r.tr);
    }
    const old = r.v, t = texts(v);
    r.v = v;
    for (const k in t) {
      if (r.t[k] === t[k]) continue;
      const e = r.el[k];
      r.t[k] = t[k];
      if (k === "row" || k === "stc") e.className = t[k];
      else if (k === "ack") e.hidden = !t[k];
      else if (k === "help") { e.textContent = t[k]; e.hidden = !t[k]; }
      else e.textContent = t[k];
    }
    if (!old || key(old) !== key(v)) sortDirty = true;
    if (!old || old.status !== v.status || old.alarms !== v.alarms || old.name !== v.name) filterDirty = true;
  }

  // filter, sort (only when a shown value or the order changed), totals over the shown rows
  function matches(v) {
    if (fStatus && v.status !== fStatus && !(fStatus === "alarm" && v.alarms > 0)) return false;
    return !fText || v.id.toLowerCase().includes(fText) || (v.name || "").toLowerCase().includes(fText);
  }
  const tie = (a, b) => coll.compare(label(a), label(b)) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  function cmp(a, b) {
    const x = key(a.v), y = key(b.v), nx = x == null, ny = y == null;
    if (nx || ny) return nx && ny ? tie(a, b) : nx ? 1 : -1;   // no value: last either way
    return (typeof x === "string" ? coll.compare(x, y) : x - y) * sortDir || tie(a, b);
  }
  function resort() {
    const next = Array.from(recs.values()).sort(cmp);
    if (next.length === order.length && next.every((r, i) => r === order[i])) return;
    const focused = document.activeElement;
    let ref = tbody.firstElementChild;
    for (const r of next) {
      if (r.tr === ref) ref = ref.nextElementSibling;
      else tbody.insertBefore(r.tr, ref);
    }
    order = next;
    if (focused !== document.activeElement && tbody.contains(focused)) focused.focus({ preventScroll: true });
  }
  const tot = $("tot").children;
  function finish(force) {
    if (filterDirty || force) for (const r of recs.values()) {
      const hide = !matches(r.v);
      if (r.tr.hidden !== hide) r.tr.hidden = hide;
    }
    if (sortDirty || force) resort();
    filterDirty = sortDirty = false;
    const c = {}, s = [0, 0, 0, 0, 0];
    let n = 0, help = false;
    for (const r of recs.values()) {
      help = help || !!r.v.needs_help;
      if (r.tr.hidden) continue;
      const v = r.v;
      n++;
      c[v.status] = (c[v.status] || 0) + 1;
      ["balance_tokens", "power_w", "energy_today_wh", "energy_month_wh", "revenue_month_tokens"].forEach((f, i) => { s[i] += v[f] || 0; });
    }
    [n + (n === 1 ? " socket" : " sockets"), Object.keys(STATUS).filter((k) => c[k]).map((k) => c[k] + " " + k).join(" \u00b7 "),
      P.figure(s[0]), P.num(s[1]) + " W", P.wh(s[2]), P.wh(s[3]), P.figure(s[4])].forEach((t, i) => P.setText(tot[i], t));
    if (helpNote.hidden === help) helpNote.hidden = !help;
    P.setText($("count"), n === recs.size ? n + " sockets" : "Showing " + n + " of " + recs.size + " sockets");
  }

  const heads = document.querySelectorAll("#tbl th[data-sort]");
  function showSort() {
    for (const th of heads) {
      if (th.dataset.sort === sortKey) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
  }
  for (const th of heads) {
    th.querySelector("button").addEventListener("click", () => {
      if (th.dataset.sort === sortKey) sortDir = -sortDir;
      else { sortKey = th.dataset.sort; sortDir = 1; }
      showSort();
      finish(true);
    });
  }
  $("q").addEventListener("input", (e) => { fText = e.target.value.trim().toLowerCase(); finish(true); });
  $("st").addEventListener("change", (e) => { fStatus = e.target.value; finish(true); });

  // actions
  const msg = $("msg");
  let msgTimer = 0;
  function say(r, text, bad) {
    msg.className = "banner " + (bad ? "bad" : "ok");
    P.setText(msg, label(r) + ": " + text);
    msg.hidden = false;
    clearTimeout(msgTimer);
    if (!bad) msgTimer = setTimeout(() => { msg.hidden = true; }, 8000);
  }
  async function post(r, path, body) {
    const res = await fetch("/api/sockets/" + encodeURIComponent(r.id) + "/" + path, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRFToken": P.csrf() },
    }).catch(() => { throw new Error("the controller could not be reached; try again (nothing is booked twice)."); });
    if (res.status === 401) {
      location.href = "/landlord/login";
      throw new Error("you are logged out.");
    }
    const j = await res.json().catch(() => null);
    if (!res.ok) throw new Error((j && (j.message || j.error)) || "the controller answered " + res.status + ".");
    const v = j && (j.view || j);
    if (v && v.id) { upsert(v); finish(); }
    return j;
  }
  const busy = new Set();
  async function act(r, path, body, done) {
    if (busy.has(r.id + path)) return;
    busy.add(r.id + path);
    try { await post(r, path, body); say(r, done + "."); } catch (err) { say(r, err.message, true); }
    busy.delete(r.id + path);
  }

  let opener = null;
  tbody.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-act]"), r = b && recs.get(b.closest("tr").dataset.id);
    if (!r) return;
    const a = b.dataset.act, off = r.v.override !== "off";
    if (a === "ov") act(r, "override", { mode: off ? "off" : "auto" }, off ? "forced off" : "back to automatic");
    else if (a === "ack") act(r, "alarms/ack", {}, "alarms acknowledged");
    else { opener = b; ({ adj: openAdjust, code: openCode, qr: openQr }[a])(r); }
  });
  document.addEventListener("click", (e) => {
    const c = e.target.closest("[data-close]");
    if (c) c.closest("dialog").close();
  });
  for (const d of document.querySelectorAll("dialog")) {
    d.addEventListener("close", () => { if (opener && opener.isConnected) opener.focus(); opener = null; });
  }

  /* Credit/debit: one request id per opening, reused by every submit of it, so a double submit books once. */
  const adj = $("adj"), form = $("adj-f"), amt = $("adj-amt"), why = $("adj-why"), aerr = $("adj-err"), go = $("adj-go");
  let adjRec = null, adjReq = "", adjBusy = false;
  function openAdjust(r) {
    adjRec = r;
    adjReq = P.requestId();
    form.reset();
    aerr.hidden = true;
    check();
    P.setText($("adj-who"), label(r) + " (" + r.id + ") \u00b7 balance " + P.money(r.v.balance_tokens));
    adj.showModal();
    amt.focus();
  }
  function check() {
    /* typed in tokens, or in the currency's major unit (12.34); booked in journal units (pence) */
    const n = P.toUnits(amt.value), int = Number.isInteger(n);
    amt.setCustomValidity(n === 0 ? "Enter an amount other than 0." : "");
    why.setCustomValidity(why.value && !why.value.trim() ? "Enter a reason." : "");
    P.setText(go, int && n > 0 ? "Credit " + P.money(n) : int && n < 0 ? "Debit " + P.money(-n) : "Book");
  }
  amt.addEventListener("input", check);
  why.addEventListener("input", check);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    check();
    if (adjBusy || !form.reportValidity()) return;
    adjBusy = true;
    go.setAttribute("aria-busy", "true");
    const n = P.toUnits(amt.value), r = adjRec;
    try {
      const j = await post(r, "adjust", { amount_tokens: n, reason: why.value.trim(), request_id: adjReq });
      adj.close();
      say(r, j && j.booked === false ? "already booked (an earlier attempt went through)." : (n > 0 ? "credited " : "debited ") + P.money(Math.abs(n)) + ".");
    } catch (err) {
      P.setText(aerr, err.message.charAt(0).toUpperCase() + err.message.slice(1));
      aerr.hidden = false;
    }
    adjBusy = false;
    go.removeAttribute("aria-busy");
  });

  /* A top-up code: each new request is a new code (the controller counts them), so one request at a time, with
     one request id per showing of the form: a retry after a lost answer gets the same code back, not a second
     one. Once made, the form gives way to the code until "Make another" is chosen (a new id). */
  const mk = $("mk"), mkForm = $("mk-f"), mkTok = $("mk-tok"), mkErr = $("mk-err"), mkGo = $("mk-go"),
    mkDone = $("mk-done"), mkCode = $("mk-code"), mkCopied = $("mk-copied");
  let mkRec = null, mkBusy = false, mkReq = "";
  function showCodeForm() {
    mkReq = P.requestId();
    mkForm.hidden = false;
    mkDone.hidden = true;
    mkErr.hidden = true;
    P.setText(mkCode, "");
    P.setText(mkCopied, "");
    P.setText($("mk-said"), "");
    mkTok.focus();
    mkTok.select();
  }
  function openCode(r) {
    mkRec = r;
    mkForm.reset();
    P.setText($("mk-who"), label(r) + " (" + r.id + ")");
    mk.showModal();
    showCodeForm();
  }
  mkForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (mkBusy) return;
    /* the form is novalidate: an amount off the step or above the most is the controller's to explain */
    if (mkTok.validity.valueMissing || mkTok.validity.badInput) { mkForm.reportValidity(); return; }
    mkBusy = true;
    mkGo.setAttribute("aria-busy", "true");
    const r = mkRec;
    try {
      const j = await post(r, "codes", { tokens: P.toUnits(mkTok.value), request_id: mkReq });
      P.setText(mkCode, j.spaced || j.code);
      P.setText($("mk-for"), P.money(j.tokens) + " for " + label(r) + " (" + r.id + "), code #" + j.count + ":");
      mkForm.hidden = true;
      mkDone.hidden = false;
      $("mk-copy").focus();
      P.announce($("mk-said"), "Code for " + P.money(j.tokens) + ": " + (j.spaced || j.code));
    } catch (err) {
      P.setText(mkErr, err.message.charAt(0).toUpperCase() + err.message.slice(1));
      mkErr.hidden = false;
      mkTok.focus();
    }
    mkBusy = false;
    mkGo.removeAttribute("aria-busy");
  });
  $("mk-again").addEventListener("click", () => { mkForm.reset(); showCodeForm(); });
  $("mk-copy").addEventListener("click", async () => {
    const how = await P.copyText(mkCode);
    P.announce(mkCopied, how === "copied" ? "Copied" : "Code selected: copy it with your device's copy command");
  });
  mk.addEventListener("close", () => { P.setText(mkCode, ""); P.setText($("mk-said"), ""); });

  /* QR: the socket view has no address; ask the socket's JSON API once and remember it. */
  const qaddr = $("qrd-addr"), addrs = {};
  function openQr(r) {
    const path = "/s/" + encodeURIComponent(r.id), known = r.v.address || addrs[r.id];
    $("qrd-img").src = path + "/qr.svg";
    $("qrd-link").href = path;
    P.setText($("qrd-name"), label(r));
    P.setText(qaddr, known || "Loading\u2026");
    $("qrd").showModal();
    if (!known) {
      fetch("/api/sockets/" + encodeURIComponent(r.id), { credentials: "same-origin" })
        .then((res) => (res.ok ? res.json() : null)).catch(() => null)
        .then((j) => {
          const a = j && j.topup && j.topup.address;
          if (a) addrs[r.id] = a;
          P.setText(qaddr, a || "Shown on the tenant page.");
        });
    }
  }

  /* start: the server-rendered rows stay until the first push brings every socket's view;
     then only the views that changed come, once per tick */
  if (typeof io === "undefined") return;
  let built = false;
  const sock = P.landlordSocket("/landlord");
  sock.on("connect", () => { $("expired").hidden = true; });
  sock.on("states", (m) => {
    if (!m || !Array.isArray(m.views) || (!built && !m.full)) return;
    now = m.at || Date.now() / 1000;
    if (!built) tbody.textContent = "";
    for (const v of m.views) upsert(v);
    if (m.full) {
      const seen = new Set(m.views.map((v) => v.id));
      for (const [id, r] of recs) if (!seen.has(id)) { r.tr.remove(); recs.delete(id); sortDirty = true; }
    }
    if (!built) {
      built = true;
      showSort();
      finish(true);
      $("filters").hidden = false;
    } else {
      finish();
    }
    P.setText($("at"), "updated " + P.clock(now));
  });
})();
