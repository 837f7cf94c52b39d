// flagstaff flag page: the blast radius of a document edit, shown before it is saved.
//
// Loaded by flag.html for writers, beside flagstaff.js (which does the save). When the
// document editor is submitted, this script stops the submit first (a capture-phase
// listener runs before flagstaff.js's), asks POST /api/v1/flags/{name}/blast how many
// units seen recently the new document would move, and shows the answer in the page's
// confirmation dialog ("N of M units seen in the last 7 days would change: ...").
// Confirm submits the form again, this time let through to flagstaff.js, which
// validates and writes with If-Match as always; Cancel (or Escape) writes nothing.
//
// Nothing to show goes straight to the save: a document that is not JSON or not valid
// (flagstaff.js reports it), a server without an event store (501), no unit seen.
"use strict";
(function () {
  const body = document.body;
  const api = (body.dataset.root || "") + "/api/v1";
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  async function radius(name, doc) {
    try {
      const res = await fetch(api + "/flags/" + encodeURIComponent(name) + "/blast", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ document: doc, days: 7 }),
      });
      return res.ok ? await res.json() : null;
    } catch (e) {
      return null; // the save itself will say what is wrong with the server
    }
  }

  // The page's dialog (base.html's #confirm): resolves true on Confirm.
  function ask(title, text, okLabel, danger, opener) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    const ok = document.getElementById("confirm-ok");
    ok.textContent = okLabel;
    ok.className = danger ? "danger" : "primary";
    dialog.returnValue = "";
    dialog.dataset.kind = "blast";
    return new Promise(function (resolve) {
      dialog.addEventListener(
        "close",
        function () {
          delete dialog.dataset.kind;
          if (opener && opener.isConnected) opener.focus();
          resolve(dialog.returnValue === "ok");
        },
        { once: true },
      );
      dialog.showModal();
      document.getElementById("confirm-cancel").focus(); // the safe choice first
    });
  }

  // Submit again, to flagstaff.js. Never from inside a submit event's dispatch: a form
  // ignores requestSubmit() while it is firing its submit event.
  function pass(form) {
    setTimeout(function () {
      form.dataset.blastChecked = "1";
      form.requestSubmit();
    }, 0);
  }

  async function preview(form, submitter) {
    const name = form.dataset.flag;
    let doc;
    try {
      doc = JSON.parse(form.elements.document.value);
    } catch (e) {
      return pass(form); // flagstaff.js says "not valid JSON"
    }
    const box = form.querySelector(".msg");
    if (box) {
      box.className = "msg";
      box.textContent = "Counting who this change would move…";
    }
    const data = await radius(name, doc);
    if (box) box.textContent = "";
    if (!data || data.units === 0) return pass(form);
    const sure = await ask(
      "Save " + name + "?",
      data.summary + ". (Each unit is decided by its user id alone: rules on other attributes are not counted.)",
      "Save " + name,
      data.changed > 0,
      submitter,
    );
    if (sure) return pass(form);
    if (box) {
      box.className = "msg error";
      box.textContent = "Not saved: cancelled after the blast radius (" + data.summary + ").";
    }
  }

  document.addEventListener(
    "submit",
    function (ev) {
      const form = ev.target.closest('form[data-form="document"]');
      if (!form) return;
      if (form.dataset.blastChecked) {
        delete form.dataset.blastChecked; // this submit goes on to flagstaff.js
        return;
      }
      ev.preventDefault();
      ev.stopImmediatePropagation();
      preview(form, ev.submitter || form.querySelector('button[type="submit"]'));
    },
    true,
  );
})();
