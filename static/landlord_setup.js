/* payg: the landlord's setup page. A scan runs on the controller in a thread of its own; the page asks for its
   progress every half second, then lists what it found, and adds the chosen meters to the configuration. */
"use strict";
(function () {
  const P = window.payg, _ = P._, $ = (id) => document.getElementById(id);
  const boot = P.boot();

  async function call(method, path, body) {
    const res = await fetch(path, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": P.csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.message || res.statusText);
    return data;
  }

  function cell(row, text) {
    const td = document.createElement("td");
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    row.appendChild(td);
  }

  function input(value, label) {
    const i = document.createElement("input");
    i.value = value; i.setAttribute("aria-label", label);
    return i;
  }

  function show(state) {
    const p = state.progress;
    if (state.error) P.setText($("progress"), _("The scan failed: {error}", { error: state.error }));
    else if (state.running) P.setText($("progress"), p ? _("{baud} baud: address {address} of {last}, {found} found so far", p) : _("Starting the scan…"));
    else P.setText($("progress"), _("Scan done: {found} meter(s) found.", { found: state.found.length }));
    if (state.running || state.error) return;
    const body = $("found");
    body.replaceChildren();
    for (const m of state.found) {
      const row = document.createElement("tr");
      row.dataset.address = m.address;
      const box = document.createElement("input");
      box.type = "checkbox"; box.setAttribute("aria-label", _("Add"));
      box.disabled = !!m.configured; box.checked = !m.configured;
      cell(row, box); cell(row, String(m.address)); cell(row, String(m.baud)); cell(row, m.model);
      cell(row, m.energy_wh + " Wh");
      if (m.configured) { cell(row, _("already socket {id}", { id: m.configured })); cell(row, ""); }
      else { cell(row, input(m.suggested_id, _("Socket id"))); cell(row, input("", _("Name"))); }
      body.appendChild(row);
    }
    $("found-card").hidden = false;
  }

  async function follow() {
    const state = await call("GET", "/landlord/setup/scan");
    show(state);
    if (state.running) setTimeout(() => follow().catch(fail), 500);
  }

  function fail(e) { P.setText($("progress"), e.message); if ($("scan")) $("scan").disabled = false; }

  const form = $("scan-form");
  if (form) form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("scan").disabled = true;
    call("POST", "/landlord/setup/scan", { port: $("port").value })
      .then(show).then(follow).then(() => { $("scan").disabled = false; }).catch(fail);
  });

  $("add-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const sockets = [];
    for (const row of $("found").rows) {
      const [box] = row.getElementsByTagName("input");
      const fields = row.querySelectorAll("input:not([type=checkbox])");
      if (box.checked && !box.disabled) sockets.push({ address: Number(row.dataset.address), id: fields[0].value, name: fields[1].value });
    }
    call("POST", "/landlord/setup/sockets", { sockets })
      .then((r) => P.setText($("result"), _("Written to {path} (the old file is {backup}). Restart the controller to use it: {restart}", { ...r, restart: boot.restart })))
      .catch((e) => P.setText($("result"), e.message));
  });
})();
