// flagstaff flag page: "Check now" on the Guardrails panel (templates/_guard.html).
//
// POST /api/v1/flags/{name}/guard (a check only: nothing is written), then the panel is
// read again from the page and swapped in, with the check's outcome said in #guard-msg.
// The server's guard loop does the enforcing; this button only asks it to look now.
"use strict";
(function () {
  const api = (document.body.dataset.root || "") + "/api/v1";
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  async function checkNow(btn) {
    const name = btn.dataset.flag;
    btn.disabled = true;
    let text;
    let ok = false;
    try {
      const res = await fetch(api + "/flags/" + encodeURIComponent(name) + "/guard", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf },
      });
      const data = await res.json().catch(function () {
        return {};
      });
      ok = res.ok;
      if (!res.ok) text = "Not checked: " + (data.error || "HTTP " + res.status);
      else if (data.error) text = "Checked: " + data.error;
      else text = data.breached ? "Checked: a guardrail is breached." : "Checked: no guardrail is breached.";
    } catch (e) {
      text = "Not checked: the server cannot be reached.";
    }
    try {
      const page = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      const fresh = new DOMParser().parseFromString(await page.text(), "text/html").getElementById("guard-panel");
      const old = document.getElementById("guard-panel");
      if (fresh && old) old.replaceWith(document.adoptNode(fresh));
    } catch (e) {
      // the old panel stays; the message below still says what the check found
    }
    const msg = document.getElementById("guard-msg");
    if (msg) {
      msg.className = "msg " + (ok ? "ok" : "error");
      msg.textContent = text;
    }
    const again = document.getElementById("guard-check");
    if (again) {
      again.disabled = false;
      again.focus();
    }
  }

  document.addEventListener("click", function (ev) {
    const btn = ev.target.closest("#guard-check");
    if (btn) {
      ev.preventDefault();
      checkNow(btn);
    }
  });
})();
