/* payg: formatting and small helpers shared by the tenant and landlord pages. */
"use strict";
window.payg = (function () {
  const nfs = {};
  const DASH = "\u2014";

  /* A number with thousands separators and d decimals (fixed: always d, else up to d). */
  function num(x, d, fixed) {
    if (x === null || x === undefined || !isFinite(x)) return DASH;
    d = d || 0;
    const key = d + (fixed ? "f" : "");
    const f = nfs[key] || (nfs[key] = new Intl.NumberFormat("en-US", {
      maximumFractionDigits: d, minimumFractionDigits: fixed ? d : 0 }));
    return f.format(x + 0).replace(/^-(0(\.0+)?)$/, "$1");
  }
  const tok = (x) => num(x, 2, !Number.isInteger(x));   /* 1,234 or 1,234.50 */

  function wh(x) {
    if (x === null || x === undefined || !isFinite(x)) return DASH;
    if (Math.abs(x) < 1000) return num(x, 0) + " Wh";
    const k = x / 1000, a = Math.abs(k);
    return num(k, a < 10 ? 2 : a < 100 ? 1 : 0, true) + " kWh";
  }

  /* "2 h 15 min", "45 min", "< 1 min" */
  function dur(s) {
    if (s === null || s === undefined || !isFinite(s) || s < 0) return DASH;
    if (s < 60) return "< 1 min";
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    if (h >= 48) return Math.floor(h / 24) + " d" + (h % 24 ? " " + (h % 24) + " h" : "");
    if (h) return h + " h" + (m % 60 ? " " + (m % 60) + " min" : "");
    return m + " min";
  }

  /* "just now", "5 min ago", "3 h ago", "2 d ago" */
  function ago(t, now) {
    if (!t) return DASH;
    const s = Math.max(0, (now || Date.now() / 1000) - t);
    if (s < 60) return "just now";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 172800) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
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
    show("wait", "Connecting\u2026");
    sock.on("connect", () => show("on", "Live"));
    sock.on("disconnect", (reason) => {
      if (reason === "io server disconnect") {
        if (onDenied) return onDenied();
        show("wait", "Reconnecting\u2026");
        setTimeout(() => sock.connect(), 3000);
      } else if (reason !== "io client disconnect") {
        show("wait", "Reconnecting\u2026");
      }
    });
    sock.on("connect_error", () => {
      if (sock.active) show("wait", "Reconnecting\u2026");
      else if (onDenied) onDenied();
      else show("off", "Not live");
    });
    return show;
  }

  /* A landlord page's Socket.IO connection (the namespace's): refused, or closed when its session ends, it
     shows the page's #expired banner, says "Not live" on #live and stays down. */
  function landlordSocket(namespace) {
    const sock = io(namespace);
    const show = watchConnection(sock, document.getElementById("live"), () => {
      document.getElementById("expired").hidden = false;
      show("off", "Not live");
      sock.disconnect();
    });
    return sock;
  }

  return { num, tok, wh, dur, ago, clock, requestId, setText, boot, csrf, copyText, announce, indicator,
    watchConnection, landlordSocket, DASH };
})();
