// flagstaff dashboard: change request buttons and the propose form. Vanilla JS.
//
// Like flagstaff.js, every write goes to the JSON API (/api/v1/change-requests)
// with the session's CSRF token; the page is then read again. A refused apply
// (the flag changed after the proposal) shows the API's diff of what changed.
"use strict";
(function () {
  if (window.flagstaffChanges) return; // included once per page even if two parts load it
  window.flagstaffChanges = true;
  const body = document.body;
  const api = (body.dataset.root || "") + "/api/v1/change-requests";
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  async function post(path, payload) {
    try {
      const res = await fetch(path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(payload || {}),
      });
      let data = {};
      try {
        data = await res.json();
      } catch (e) {
        data = {};
      }
      return { ok: res.ok, status: res.status, data: data };
    } catch (e) {
      return { ok: false, status: 0, data: { error: "The server cannot be reached." } };
    }
  }

  function show(el, kind, text) {
    if (!el) return;
    el.className = "msg " + kind;
    el.textContent = text;
    el.focus();
  }

  function problems(data) {
    return (data.problems || []).map(function (p) {
      return (p.path ? p.path + ": " : "") + p.message;
    });
  }

  // Approve, apply, cancel on a change request's page.
  document.addEventListener("click", async function (ev) {
    const btn = ev.target.closest("[data-cr-action]");
    if (!btn) return;
    ev.preventDefault();
    const panel = btn.closest("[data-change-request]");
    const msg = document.getElementById("cr-msg");
    btn.disabled = true;
    const res = await post(api + "/" + panel.dataset.changeRequest + "/" + btn.dataset.crAction);
    btn.disabled = false;
    if (res.ok) {
      window.location.reload();
      return;
    }
    const text = [res.data.error || "Request failed (HTTP " + res.status + ")."].concat(problems(res.data));
    show(msg, "error", text.join(" "));
    msg.dataset.code = res.data.code || "";
    if (res.data.code === "stale" && res.data.stale) {
      const pre = document.getElementById("cr-conflict");
      pre.textContent = res.data.stale.unified || "(the flag was rewritten)";
      pre.hidden = false;
    }
  });

  document.addEventListener("submit", async function (ev) {
    const form = ev.target.closest("form[data-cr-form]");
    if (!form) return;
    ev.preventDefault();
    if (form.dataset.crForm === "reject") {
      const panel = form.closest("[data-change-request]");
      const res = await post(api + "/" + panel.dataset.changeRequest + "/reject", { reason: form.elements.reason.value });
      if (res.ok) window.location.reload();
      else show(document.getElementById("cr-msg"), "error", res.data.error || "Request failed.");
      return;
    }
    // propose: the flag page's form
    const msg = document.getElementById("propose-msg");
    let documentValue;
    try {
      documentValue = JSON.parse(form.elements.document.value);
    } catch (e) {
      show(msg, "error", "The document is not JSON: " + e.message);
      return;
    }
    const payload = { flag: form.dataset.flag, document: documentValue, comment: form.elements.comment.value };
    if (form.elements.apply_at.value) payload.apply_at = new Date(form.elements.apply_at.value).toISOString();
    const res = await fetch(api, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "If-Match": '"' + form.dataset.version + '"' },
      body: JSON.stringify(payload),
    }).catch(function () {
      return null;
    });
    const data = res ? await res.json().catch(function () { return {}; }) : { error: "The server cannot be reached." };
    if (res && res.status === 201) {
      window.location.href = (body.dataset.root || "") + "/change-requests/" + data.id;
      return;
    }
    show(msg, "error", [data.error || "Request failed."].concat(problems(data)).join(" "));
  });
})();
