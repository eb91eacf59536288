/* payg: the landlord's actions on one socket, shared by the overview (landlord.js) and a socket's page
   (landlord_socket.js): the JSON requests, the message banner, the credit/debit dialog and the top-up code dialog. */
"use strict";
window.paygLandlord = (function () {
  /* the words, in the page's language (static/common.js `_`); each text is written out in its call, where
     `make messages` finds it */
  const P = window.payg, _ = P._, $ = (id) => document.getElementById(id);
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  const label = (r) => r.v.name || r.id;
  const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);

  /* onView(view): a view the controller answered with; the page shows it at once, before the next push */
  function actions(onView) {
    const msg = $("msg");
    let msgTimer = 0, opener = null;
    function say(r, text, bad) {
      msg.className = "banner " + (bad ? "bad" : "ok");
      P.setText(msg, _("{socket}: {message}", { socket: label(r), message: text }));
      msg.hidden = false;
      clearTimeout(msgTimer);
      if (!bad) msgTimer = setTimeout(() => { msg.hidden = true; }, 8000);
    }
    async function post(r, path, body) {
      const res = await fetch("/api/sockets/" + encodeURIComponent(r.id) + "/" + path, {
        method: "POST", credentials: "same-origin", body: JSON.stringify(body),
        headers: { "Content-Type": "application/json", "X-CSRFToken": P.csrf() },
      }).catch(() => { throw new Error(_("the controller could not be reached; try again (nothing is booked twice).")); });
      if (res.status === 401) {
        location.href = "/landlord/login";
        throw new Error(_("you are logged out."));
      }
      const j = await res.json().catch(() => null);
      /* the controller's own words (English, as the JSON API says them) when it gave any */
      if (!res.ok) throw new Error((j && (j.message || j.error)) || _("the controller answered {status}.", { status: res.status }));
      const v = j && (j.view || j);
      if (v && v.id) onView(v);
      return j;
    }
    const busy = new Set();
    /* done: what the banner says once the controller has answered ("forced off.") */
    async function act(r, path, body, done) {
      if (busy.has(r.id + path)) return;
      busy.add(r.id + path);
      try { await post(r, path, body); say(r, done); } catch (err) { say(r, err.message, true); }
      busy.delete(r.id + path);
    }

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
    function openAdjust(r, from) {
      opener = from;
      adjRec = r;
      adjReq = P.requestId();
      form.reset();
      aerr.hidden = true;
      check();
      P.setText($("adj-who"), _("{name} ({id}) \u00b7 balance {balance}", { name: label(r), id: r.id,
        balance: P.money(r.v.balance_tokens) }));
      adj.showModal();
      amt.focus();
    }
    function check() {
      /* typed in tokens, or in the currency's major unit (12.34); booked in journal units (pence) */
      const n = P.toUnits(amt.value), int = Number.isInteger(n);
      amt.setCustomValidity(n === 0 ? _("Enter an amount other than 0.") : "");
      why.setCustomValidity(why.value && !why.value.trim() ? _("Enter a reason.") : "");
      P.setText(go, int && n > 0 ? _("Credit {amount}", { amount: P.money(n) }) : int && n < 0
        ? _("Debit {amount}", { amount: P.money(-n) }) : _("Book"));
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
        const amount = P.money(Math.abs(n));
        say(r, j && j.booked === false ? _("already booked (an earlier attempt went through).")
          : n > 0 ? _("credited {amount}.", { amount }) : _("debited {amount}.", { amount }));
      } catch (err) {
        P.setText(aerr, capital(err.message));
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
    function openCode(r, from) {
      opener = from;
      mkRec = r;
      mkForm.reset();
      P.setText($("mk-who"), fill("{name} ({id})", { name: label(r), id: r.id }));
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
        /* `number` is what people call the code (1, 2, 3 ...), not OpenPAYGO's count */
        P.setText($("mk-for"), _("{amount} for {name} ({id}), code {number}:", { amount: P.money(j.tokens), name: label(r),
          id: r.id, number: j.number }));
        mkForm.hidden = true;
        mkDone.hidden = false;
        $("mk-copy").focus();
        P.announce($("mk-said"), _("Code for {amount}: {code}", { amount: P.money(j.tokens), code: j.spaced || j.code }));
      } catch (err) {
        P.setText(mkErr, capital(err.message));
        mkErr.hidden = false;
        mkTok.focus();
      }
      mkBusy = false;
      mkGo.removeAttribute("aria-busy");
    });
    $("mk-again").addEventListener("click", () => { mkForm.reset(); showCodeForm(); });
    $("mk-copy").addEventListener("click", async () => {
      const how = await P.copyText(mkCode);
      P.announce(mkCopied, how === "copied" ? _("Copied") : _("Code selected: copy it with your device's copy command"));
    });
    mk.addEventListener("close", () => { P.setText(mkCode, ""); P.setText($("mk-said"), ""); });

    return { say, post, act, openAdjust, openCode, setOpener: (b) => { opener = b; } };
  }

  return { actions, fill };
})();
