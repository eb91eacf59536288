/* payg landlord page: one live table of every socket, built once and patched cell by cell on each push. */
"use strict";
(function () {
  const P = window.payg, _ = P._, L = window.paygLandlord, $ = (id) => document.getElementById(id), fill = L.fill;
  /* the words, in the page's language (static/common.js `_`, `n_`); each text is written out in its call, where
     `make messages` finds it */
  const T = {
    status: { on: _("On"), off: _("Off"), offline: _("Offline"), alarm: _("Alarm"), vacant: _("Vacant") },
    /* a footer's count of each status: "2 on · 1 off" */
    count: {
      on: (n) => P.n_("{n} on", "{n} on", n, { n }),
      off: (n) => P.n_("{n} off", "{n} off", n, { n }),
      offline: (n) => P.n_("{n} offline", "{n} offline", n, { n }),
      alarm: (n) => P.n_("{n} in alarm", "{n} in alarm", n, { n }),
      vacant: (n) => P.n_("{n} vacant", "{n} vacant", n, { n }),
    },
    /* a meter's suspect reading, as its status names it */
    meterState: { implausible_jump: _("implausible jump"), counter_reset: _("counter reset"), relay_bypass: _("relay bypass") },
    adjust: _("Credit/debit\u2026"), code: _("Make a code\u2026"), qr: "QR", ack: _("Acknowledge"), details: _("Details"),
    forcedOff: _("forced off"), noCredit: _("no credit"), usedUp: _("used up"), low: _("low credit"),
    forceOff: _("Force off"), automatic: _("Automatic"), didOff: _("forced off."), didAuto: _("back to automatic."),
    didAck: _("alarms acknowledged."), loading: _("Loading\u2026"), onTenantPage: _("Shown on the tenant page."),
    hours: "{n} h", minutes: "{n} min", under3: _("< 3 min"),
  };
  const boot = P.boot(), tbody = $("rows");
  P.useMoney(boot.page && boot.page.money);
  const recs = new Map();   // id -> {id, v: view, tr, el: {key: element}, t: {key: text shown}}
  let order = [], sortKey = "name", sortDir = 1, fText = "", fStatus = "", sortDirty = false, filterDirty = false;
  let now = Date.now() / 1000;
  const STATUS = T.status;
  const RANK = { alarm: 0, offline: 1, off: 2, on: 3 };
  const FIELD = { name: "name", balance: "balance_tokens", power: "power_w", today: "energy_today_wh",
    month: "energy_month_wh", revenue: "revenue_month_tokens", topup: "last_topup_at" };
  const key = (v) => (sortKey === "status" ? (v.status in RANK ? RANK[v.status] : 9) : v[FIELD[sortKey]]);
  const coll = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  const label = (r) => r.v.name || r.id;
  /* the flag on a socket off for lack of credit longer than [protections] flag_off_hours in the last 7 days */
  const helpNote = $("help-note"), HELP_TITLE = helpNote.dataset.title;
  const offH = (h) => (h >= 1 ? fill(T.hours, { n: Math.floor(h) }) : h > 0 ? fill(T.minutes, { n: Math.round(h * 60) })
    : T.under3);

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
    const page = h(td, "a", "btn small", T.details);   // the socket's own landlord page
    page.href = "/landlord/sockets/" + encodeURIComponent(v.id);
    h(page, "span", "sr-only", " " + name);
    for (const [act, text] of [["ov", ""], ["adj", T.adjust], ["code", T.code], ["qr", T.qr], ["ack", T.ack]]) {
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
    if (v.override === "off") d.push(T.forcedOff);
    if (v.alarms > 0) d.push(P.n_("{n} alarm", "{n} alarms", v.alarms, { n: v.alarms }));
    if (v.alarm_detail) d.push(v.alarm_detail);
    else if (v.meter && v.meter !== "ok" && v.meter !== "offline") {
      d.push(T.meterState[v.meter] || String(v.meter).replace(/_/g, " "));
    }
    if (v.meter_error) d.push(_("meter: {error}", { error: v.meter_error }));
    if (v.relay_error) d.push(_("relay: {error}", { error: v.relay_error }));
    return {
      row: "st-" + v.status + (v.low_credit ? " low" : ""),
      name: v.name || v.id,
      stc: "pill st-" + v.status,
      st: STATUS[v.status] || String(v.status),
      help: v.needs_help ? _("Off {time} in 7 days", { time: offH(v.off_for_credit_h_7d) }) : "",
      stx: d.join(" \u00b7 "),
      bal: P.figure(v.balance_tokens),
      balx: v.debt > 0 ? _("debt {amount}", { amount: P.figure(v.debt) }) : v.balance_tokens <= 0 ? T.noCredit
        : v.credit_exhausted ? T.usedUp
        : v.low_credit ? T.low : "",
      pw: v.power_w == null ? P.DASH : P.num(v.power_w) + " W",
      today: P.wh(v.energy_today_wh),
      month: P.wh(v.energy_month_wh),
      rev: P.figure(v.revenue_month_tokens),
      tu: P.ago(v.last_topup_at, now),
      tux: v.last_topup_at && v.last_topup_tokens ? "+" + P.money(v.last_topup_tokens) : "",
      ov: v.override === "off" ? T.automatic : T.forceOff,
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
    [P.n_("{n} socket", "{n} sockets", n, { n }), Object.keys(STATUS).filter((k) => c[k]).map((k) => T.count[k](c[k])).join(" \u00b7 "),
      P.figure(s[0]), P.num(s[1]) + " W", P.wh(s[2]), P.wh(s[3]), P.figure(s[4])].forEach((t, i) => P.setText(tot[i], t));
    if (helpNote.hidden === help) helpNote.hidden = !help;
    P.setText($("count"), n === recs.size ? P.n_("{n} socket", "{n} sockets", n, { n })
      : _("Showing {n} of {all} sockets", { n, all: recs.size }));
  }

  /* two ways to sort: the column heads (wide screens), or on a phone one select and a direction button in the
     toolbar, which take one line where the heads took three (the heads are hidden there) */
  const heads = document.querySelectorAll("#tbl th[data-sort]"), sortSel = $("sort"), sortDirB = $("sort-dir");
  function showSort() {
    for (const th of heads) {
      if (th.dataset.sort === sortKey) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    sortSel.value = sortKey;
    sortDirB.setAttribute("aria-pressed", sortDir < 0 ? "true" : "false");
  }
  function sortBy(k, dir) {
    sortKey = k;
    sortDir = dir;
    showSort();
    finish(true);
  }
  for (const th of heads) {
    th.querySelector("button").addEventListener("click", () => sortBy(th.dataset.sort, th.dataset.sort === sortKey ? -sortDir : 1));
  }
  sortSel.addEventListener("change", () => sortBy(sortSel.value, 1));
  sortDirB.addEventListener("click", () => sortBy(sortKey, -sortDir));
  $("q").addEventListener("input", (e) => { fText = e.target.value.trim().toLowerCase(); finish(true); });
  $("st").addEventListener("change", (e) => { fStatus = e.target.value; finish(true); });

  // actions (the requests and the dialogs: landlord_actions.js)
  const A = L.actions((v) => { upsert(v); finish(); });
  tbody.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-act]"), r = b && recs.get(b.closest("tr").dataset.id);
    if (!r) return;
    const a = b.dataset.act, off = r.v.override !== "off";
    if (a === "ov") A.act(r, "override", { mode: off ? "off" : "auto" }, off ? T.didOff : T.didAuto);
    else if (a === "ack") A.act(r, "alarms/ack", {}, T.didAck);
    else if (a === "adj") A.openAdjust(r, b);
    else if (a === "code") A.openCode(r, b);
    else { A.setOpener(b); openQr(r); }
  });

  /* QR: the socket view has no address; ask the socket's JSON API once and remember it. */
  const qaddr = $("qrd-addr"), addrs = {};
  function openQr(r) {
    const path = "/s/" + encodeURIComponent(r.id), known = r.v.address || addrs[r.id];
    $("qrd-img").src = path + "/qr.svg";
    $("qrd-link").href = path;
    P.setText($("qrd-name"), label(r));
    P.setText(qaddr, known || T.loading);
    $("qrd").showModal();
    if (!known) {
      fetch("/api/sockets/" + encodeURIComponent(r.id), { credentials: "same-origin" })
        .then((res) => (res.ok ? res.json() : null)).catch(() => null)
        .then((j) => {
          const a = j && j.topup && j.topup.address;
          if (a) addrs[r.id] = a;
          P.setText(qaddr, a || T.onTenantPage);
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
    P.setText($("at"), _("updated {time}", { time: P.clock(now) }));
  });
})();
