// Promotion from the flag page (templates/_promote.html, docs/teams.md): ask the API for the
// plan (the diff, both versions), show it, and promote only with the destination version that
// was shown (expect=) and the source version (source=): if either moved, the API answers 409
// with the new plan, which replaces the old one here; nothing is written over.
(function () {
  "use strict";
  const form = document.getElementById("promote");
  if (!form) return;
  const root = document.body.dataset.root || "";
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const planBox = document.getElementById("promote-plan");
  const summary = document.getElementById("promote-summary");
  const diff = document.getElementById("promote-diff");
  const confirmButton = document.getElementById("promote-confirm");
  const msg = document.getElementById("promote-msg");
  let plan = null;

  async function promote(query) {
    const url = root + "/api/v1/flags/" + encodeURIComponent(form.dataset.flag) + "/promote?" + query;
    const res = await fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
    let body = {};
    try {
      body = await res.json();
    } catch (e) {
      body = { error: "unexpected answer (" + res.status + ")" };
    }
    return { status: res.status, body: body };
  }

  function say(text, kind) {
    msg.textContent = text;
    msg.className = "msg" + (kind ? " " + kind : "");
  }

  function show(next) {
    plan = next;
    const where = plan.target_version ? "version " + plan.target_version : "no such flag yet";
    let radius = plan.blast_note ? " \u00b7 blast radius: " + plan.blast_note : "";
    if (plan.blast) {
      radius = " \u00b7 " + plan.blast.changed + " of " + plan.blast.units + " units seen in the last 7 days would change";
    }
    summary.textContent =
      plan.from + " version " + plan.source_version + " \u2192 " + plan.to + " (" + where + ")" + radius;
    diff.textContent = "";
    for (const line of plan.diff) {
      const span = document.createElement("span");
      if (line.startsWith("+") && !line.startsWith("+++")) span.className = "add";
      if (line.startsWith("-") && !line.startsWith("---")) span.className = "del";
      span.textContent = line + "\n";
      diff.appendChild(span);
    }
    if (!plan.diff.length) diff.textContent = "(the same in both)";
    planBox.hidden = false;
    confirmButton.disabled = !plan.changed;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    say("");
    const to = form.elements.to.value;
    const answer = await promote("to=" + encodeURIComponent(to) + "&dry_run=true");
    if (answer.status !== 200) {
      planBox.hidden = true;
      say(answer.body.error || "refused", "error");
      return;
    }
    show(answer.body);
  });

  confirmButton.addEventListener("click", async function () {
    if (!plan) return;
    const query =
      "to=" + encodeURIComponent(plan.to) + "&expect=" + plan.target_version + "&source=" + plan.source_version;
    confirmButton.disabled = true;
    const answer = await promote(query);
    if (answer.status === 200) {
      say("Promoted to " + plan.to + ": now version " + answer.body.version + ".", "ok");
      planBox.hidden = true;
      plan = null;
    } else if (answer.status === 409 && answer.body.diff) {
      show(answer.body);
      say("Changed since you looked: nothing was written. Review the new difference and promote again.", "error");
    } else {
      confirmButton.disabled = false;
      say(answer.body.error || "refused", "error");
    }
  });
})();
