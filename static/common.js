/* payg: formatting and small helpers shared by the tenant and landlord pages, in the page's language. */
"use strict";
window.payg = (function () {
  const nfs = {};
  const DASH = "\u2014";

  /* The page's language (<html lang>) and its scripts' strings, which the base template embeds as JSON
     (payg/webkit/i18n.py `script_strings`: msgid -> text, a plural's msgid -> its forms; empty in English). */
  const LANG = document.documentElement.lang || "en";
  const STRINGS = (function () {
    const el = document.getElementById("i18n");
    try { return el ? JSON.parse(el.textContent) : {}; } catch (e) { return {}; }
  })();
  const fill = (t, args) => (args ? t.replace(/\{(\w+)\}/g, (m, k) => (k in args ? String(args[k]) : m)) : t);
  /* a text in the page's language: _("{n} min ago", {n: 5}) */
  function _(s, args) { return fill(typeof STRINGS[s] === "string" ? STRINGS[s] : s, args); }
  /* one of two forms by n (CLDR's rule for the language: French says "0 jeton", English "0 tokens") */
  const rule = new Intl.PluralRules(LANG);
  function n_(one, many, n, args) {
    const i = rule.select(Math.abs(n)) === "one" ? 0 : 1, forms = STRINGS[one];
    return fill(Array.isArray(forms) ? forms[Math.min(i, forms.length - 1)] : i ? many : one, args);
  }

  /* A number with thousands separators and d decimals (fixed: always d, else up to d). */
  function num(x, d, fixed) {
    if (x === null || x === undefined || !isFinite(x)) return DASH;
    d = d || 0;
    const key = d + (fixed ? "f" : "");
    const f = nfs[key] || (nfs[key] = new Intl.NumberFormat(LANG, {
      maximumFractionDigits: d, minimumFractionDigits: fixed ? d : 0 }));
    return f.format(x + 0).replace(/^[-\u2212](0([.,]0+)?)$/, "$1");
  }
  const tok = (x) => num(x, 2, !Number.isInteger(x));   /* 1,234 or 1,234.50 */

  /* Money: a journal amount is tokens, or with [tariff] currency the currency's minor unit; the page's boot data
     says which (page.money: {currency, minor, locale}, payg/webkit/money.py `page`), and the server writes the
     same with Babel. m: another unit than the page's (the hub's rows: {currency, locale}, the digits from Intl). */
  let unit = null;
  function useMoney(m) { unit = m && m.currency ? m : null; }
  const cur = (m) => (m === undefined ? unit : m && m.currency ? m : null);
  function currencyFormat(m) {
    const key = m.locale + " " + m.currency + " " + m.minor;
    if (!nfs[key]) {
      const o = { style: "currency", currency: m.currency };
      if (m.minor !== undefined && m.minor !== null) { o.minimumFractionDigits = m.minor; o.maximumFractionDigits = m.minor; }
      nfs[key] = new Intl.NumberFormat(m.locale || "en-GB", o);
    }
    return nfs[key];
  }
  const digits = (m) => (m.minor !== undefined && m.minor !== null ? m.minor
    : currencyFormat(m).resolvedOptions().maximumFractionDigits);
  /* the amount without its unit in tokens (1,234), with its sign in a currency (£12.34) */
  function figure(x, m) {
    m = cur(m);
    if (x === null || x === undefined || !isFinite(x)) return DASH;
    return m ? currencyFormat(m).format(x / Math.pow(10, digits(m))) : tok(x);
  }
  /* the amount with its unit: "1,234 tokens", "1 token", "£12.34" */
  const money = (x, m) => (cur(m) || x === null || x === undefined || !isFinite(x) ? figure(x, m)
    : n_("{amount} token", "{amount} tokens", Number.isInteger(x) ? x : 2, { amount: figure(x, m) }));
  /* what amounts are counted in, for a label: "tokens" or the currency's code */
  const moneyWord = (m) => (cur(m) ? cur(m).currency : _("tokens"));
  /* what a person types (major unit in a currency: "12.34", or "12,34" as French writes it; whole tokens) as a
     journal amount, exactly; NaN if it is not one */
  function toUnits(text, m) {
    m = cur(m);
    const t = String(text).trim(), d = m ? digits(m) : 0;
    const f = new RegExp("^([-\u2212]?)(\\d+)(?:[.,](\\d{0," + d + "}))?$").exec(t);
    if (!f || (!d && f[3] !== undefined)) return NaN;
    const n = Number(f[2]) * Math.pow(10, d) + Number((f[3] || "").padEnd(d, "0") || 0);
    return Number.isSafeInteger(n) ? (f[1] ? -n : n) : NaN;
  }
  /* a journal amount as the figure a person types back (1234 pence: "12.34") */
  const toMajor = (x, m) => (cur(m) ? (x / Math.pow(10, digits(cur(m)))).toFixed(digits(cur(m))) : String(x));

  function wh(x) {
    if (x === null || x === undefined || !isFinite(x)) return DASH;
    if (Math.abs(x) < 1000) return num(x, 0) + " Wh";
    const k = x / 1000, a = Math.abs(k);
    return num(k, a < 10 ? 2 : a < 100 ? 1 : 0, true) + " kWh";
  }

  /* "2 h 15 min", "45 min", "< 1 min"; days are "d" in English, "j" in French */
  function dur(s) {
    if (s === null || s === undefined || !isFinite(s) || s < 0) return DASH;
    if (s < 60) return "< 1 min";
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    if (h >= 48) return _("{n} d", { n: Math.floor(h / 24) }) + (h % 24 ? " " + (h % 24) + " h" : "");
    if (h) return h + " h" + (m % 60 ? " " + (m % 60) + " min" : "");
    return m + " min";
  }

  /* "just now", "5 min ago", "3 h ago", "2 d ago" */
  function ago(t, now) {
    if (!t) return DASH;
    const s = Math.max(0, (now || Date.now() / 1000) - t);
    if (s < 60) return _("just now");
    if (s < 3600) return _("{n} min ago", { n: Math.floor(s / 60) });
    if (s < 172800) return _("{n} h ago", { n: Math.floor(s / 3600) });
    return _("{n} d ago", { n: Math.floor(s / 86400) });
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString(LANG, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  /* A random request id (hex); crypto.randomUUID needs a secure context, getRandomValues does not. */
  function requestId() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function setText(el, t) {
    if (el && el.textContent !== t) el.textContent = t;
  }

  function boot() {
    return JSON.parse(document.getElementById("boot").textContent);
  }

  function csrf() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  }

  /* Copy an element's text: the clipboard API where the page may use it, else the text is selected and the
     browser's copy command run. Resolves to "copied", or "selected" (left for the user to copy). */
  async function copyText(el) {
    const text = el.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return "copied"; } catch (e) { /* fall back */ }
    }
    const r = document.createRange();
    r.selectNodeContents(el);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(r);
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    return ok ? "copied" : "selected";
  }

  /* Set a live region's text so that it is announced even when it is the same as before. */
  function announce(el, t) {
    if (el.textContent === t) {
      el.textContent = "";
      setTimeout(() => { el.textContent = t; }, 50);
    } else {
      el.textContent = t;
    }
  }

  /* The "live" / "reconnecting…" badge: <p class="live"><span class="dot"></span><span class="txt"></span></p> */
  function indicator(el) {
    const txt = el.querySelector(".txt");
    return function (state, text) {
      el.dataset.state = state;
      setText(txt, text);
    };
  }

  /* Wire a Socket.IO client to a badge; onDenied runs when the server refuses the connection. */
  function watchConnection(sock, el, onDenied) {
    const show = indicator(el);
    show("wait", _("Connecting\u2026"));
    sock.on("connect", () => show("on", _("Live")));
    sock.on("disconnect", (reason) => {
      if (reason === "io server disconnect") {
        if (onDenied) return onDenied();
        show("wait", _("Reconnecting\u2026"));
        setTimeout(() => sock.connect(), 3000);
      } else if (reason !== "io client disconnect") {
        show("wait", _("Reconnecting\u2026"));
      }
    });
    sock.on("connect_error", () => {
      if (sock.active) show("wait", _("Reconnecting\u2026"));
      else if (onDenied) onDenied();
      else show("off", _("Not live"));
    });
    return show;
  }

  /* A landlord page's Socket.IO connection (the namespace's): refused, or closed when its session ends, it
     shows the page's #expired banner, says "Not live" on #live and stays down. */
  function landlordSocket(namespace) {
    const sock = io(namespace);
    const show = watchConnection(sock, document.getElementById("live"), () => {
      document.getElementById("expired").hidden = false;
      show("off", _("Not live"));
      sock.disconnect();
    });
    return sock;
  }

  return { _, n_, lang: LANG, num, tok, useMoney, figure, money, moneyWord, toUnits, toMajor, wh, dur, ago, clock, requestId, setText, boot, csrf, copyText, announce, indicator,
    watchConnection, landlordSocket, DASH };
})();
