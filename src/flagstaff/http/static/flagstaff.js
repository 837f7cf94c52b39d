// flagstaff dashboard: the one script. Vanilla JS, no build step.
//
// The pages are rendered on the server; this script (1) sends writes to the
// JSON API with the session's CSRF token, (2) filters the flag list as you
// type, and (3) follows the server-sent event stream: on a change it fetches
// the page again and swaps the regions marked data-live, except a region
// holding a form with unsaved edits, which is kept and flagged instead.
//
// Every write carries If-Match with the version the control was rendered from
// (data-base on the control or an ancestor), so a page that has not seen a
// colleague's change cannot overwrite it: the API answers 409 and the page
// shows what changed instead. After the event stream reconnects the page is
// re-read (changes made meanwhile were never streamed to it); a 401 anywhere
// shows "Signed out" and stops reconnecting.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const body = document.body;
  const root = body.dataset.root || "";
  const api = root + "/api/v1";
  const csrf = ($('meta[name="csrf-token"]') || {}).content || "";
  const page = body.dataset.page;
  const written = new Set(); // "name@version" of writes made from this page
  let inflight = 0; // writes sent and not yet answered
  let signedOut = false;

  // ------------------------------------------------------------------ helpers

  function announce(text) {
    const a = $("#announcer");
    if (a) a.textContent = text;
  }

  function problemText(p) {
    if (typeof p === "string") return p;
    if (p && p.path) return p.path + ": " + p.message;
    return p && p.message ? p.message : String(p);
  }

  // Show a message in a .msg element: kind "ok" or "error", optional problem list.
  function show(el, kind, text, problems) {
    if (!el) return;
    el.className = "msg " + kind;
    el.textContent = text;
    if (problems && problems.length) {
      const ul = document.createElement("ul");
      for (const p of problems) {
        const li = document.createElement("li");
        li.textContent = problemText(p);
        ul.append(li);
      }
      el.append(ul);
    }
  }

  function errorText(res) {
    const d = res.data || {};
    if (res.status === 409 && d.current_version !== undefined) {
      return "Someone else changed the flag meanwhile (it is now at version " + d.current_version + "). Nothing was overwritten.";
    }
    if (res.status === 0) return d.error || "The server cannot be reached.";
    return d.error || d.detail || "Request failed (HTTP " + res.status + ").";
  }

  function flagUrl(name, rest) {
    return api + "/flags/" + encodeURIComponent(name) + (rest || "");
  }

  // The version a control's write is based on: what the page showed when the
  // control was rendered (data-base on it or an ancestor).
  function baseOf(el) {
    const holder = el && el.closest("[data-base]");
    return holder ? holder.dataset.base : "";
  }

  function ifMatch(base) {
    return base ? { "If-Match": '"' + base + '"' } : {};
  }

  function short(value) {
    if (value === null || value === undefined) return "(none)";
    const text = JSON.stringify(value);
    return text.length <= 60 ? text : text.slice(0, 57) + "...";
  }

  // A refused write (409): say that nothing was overwritten and show what
  // changed between the version the page showed and the current one.
  async function showConflict(box, name, base, res) {
    const now = res.data.current_version;
    const text =
      "Someone else changed the flag meanwhile (version " + base + " \u2192 " + (now === null ? "deleted" : now) +
      "). Nothing was overwritten. What changed:";
    let lines = [];
    if (base && now !== null) {
      const diff = await call("GET", flagUrl(name, "/diff?from=" + encodeURIComponent(base)));
      if (diff.ok) {
        lines = (diff.data.changes || []).map(function (c) {
          return (c.path || "document") + ": " + short(c.before) + " \u2192 " + short(c.after);
        });
      }
    }
    show(box, "error", text, lines.length ? lines : ["(the flag was rewritten)"]);
    if (box) box.dataset.conflict = "1";
    refresh();
  }

  // Signed out (the session expired or its token was revoked): say so, offer
  // the login page, and stop following the event stream.
  function signOut() {
    if (signedOut) return;
    signedOut = true;
    closeStream();
    const el = $("#live-state");
    if (el) {
      el.dataset.state = "signed-out";
      el.textContent = "Signed out. ";
      const a = document.createElement("a");
      a.href = root + "/login";
      a.textContent = "Sign in again";
      a.id = "sign-in";
      el.append(a);
    }
    announce("Signed out: sign in again to continue");
  }

  // One JSON request to the API. Resolves to {ok, status, data}; never rejects.
  async function call(method, path, payload, headers) {
    const init = {
      method: method,
      credentials: "same-origin",
      headers: Object.assign({ Accept: "application/json", "X-CSRF-Token": csrf }, headers || {}),
    };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    // A write counts as in flight until its version is in `written`: the echo
    // of it on the event stream can arrive before its answer.
    const writing = method !== "GET";
    if (writing) inflight += 1;
    try {
      let res;
      try {
        res = await fetch(path, init);
      } catch (e) {
        return { ok: false, status: 0, data: { error: "The server cannot be reached: " + e.message } };
      }
      if (res.status === 401) signOut();
      let data = null;
      try {
        data = await res.json();
      } catch (e) {
        data = null;
      }
      data = data || {};
      if (res.ok && data.name && data.version !== undefined) {
        written.add(data.name + "@" + data.version);
        if (data.key) written.add(data.key + "@" + data.version); // a segment's store key
      }
      return { ok: res.ok, status: res.status, data: data };
    } finally {
      if (writing) inflight -= 1;
    }
  }

  // The confirmation dialog: resolves true when the operator confirms.
  // withComment: the dialog also asks why (an empty box each time); the caller reads
  // it from #confirm-comment once the promise says yes.
  function confirmAction(title, text, okLabel, danger, withComment) {
    const dialog = $("#confirm");
    const opener = document.activeElement;
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    const ok = $("#confirm-ok");
    ok.textContent = okLabel;
    ok.className = danger ? "danger" : "primary";
    const commentRow = $("#confirm-comment-row");
    const comment = $("#confirm-comment");
    if (commentRow) commentRow.hidden = !withComment;
    if (comment) comment.value = "";
    dialog.returnValue = "";
    return new Promise(function (resolve) {
      dialog.addEventListener(
        "close",
        function () {
          if (opener && opener.isConnected) opener.focus();
          resolve(dialog.returnValue === "ok");
        },
        { once: true },
      );
      dialog.showModal();
      (withComment && comment ? comment : $("#confirm-cancel")).focus();
    });
  }

  // Enter in the dialog's comment box would submit its form with the first button
  // (Cancel), dropping what was typed: it does nothing; the buttons act.
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && ev.target && ev.target.id === "confirm-comment") ev.preventDefault();
  });

  function messageBox(el) {
    const section = el.closest("section, main");
    return section ? $(".msg", section) : null;
  }

  // ------------------------------------------------------------------ actions

  async function patch(name, op, extra, box, done, base, unchanged) {
    const res = await call("PATCH", flagUrl(name), Object.assign({ op: op }, extra), ifMatch(base));
    if (res.ok) {
      const text = res.data.changed === false && unchanged ? unchanged : done + " (version " + res.data.version + ").";
      show(box, "ok", text);
      announce(text);
      refresh();
    } else if (res.status === 409) {
      await showConflict(box, name, base, res);
    } else {
      show(box, "error", errorText(res), res.data.problems);
    }
    return res;
  }

  const actions = {
    async kill(btn) {
      const name = btn.dataset.flag;
      const yes = await confirmAction(
        "Kill " + name + "?",
        "This turns " + name + " off for everyone, at once, in every service that follows the store. " +
          "The rest of the flag is kept, so Enable brings it back as it was.",
        "Kill " + name,
        true,
      );
      if (yes) await patch(name, "kill", {}, messageBox(btn), name + " killed: off for everyone", baseOf(btn));
    },

    async enable(btn) {
      const name = btn.dataset.flag;
      const box = messageBox(btn);
      const base = baseOf(btn);
      const sure = await confirmAction(
        "Enable " + name + "?",
        "This removes the kill switch: " + name + " answers again as its targeting says, at once, in every " +
          "service that follows the store.",
        "Enable " + name,
        false,
      );
      if (!sure) return;
      const res = await call("PATCH", flagUrl(name), { op: "enable" }, ifMatch(base));
      if (res.ok) {
        show(box, "ok", name + " enabled (version " + res.data.version + ").");
        announce(name + " enabled");
        refresh();
        return;
      }
      if (res.status === 409) {
        await showConflict(box, name, base, res);
        return;
      }
      if (res.status === 422) {
        // Nothing to enable: the flag has no targeting. Offer "on for everyone".
        const yes = await confirmAction(
          "Turn " + name + " on for everyone?",
          name + " has no targeting (no percentage, users, groups or rules), so enabling it leaves it off for " +
            "everyone. Turn it on for everyone instead?",
          "On for everyone",
          false,
        );
        if (yes) await patch(name, "enable", { everyone: true }, box, name + " on for everyone", base);
        return;
      }
      show(box, "error", errorText(res), res.data.problems);
    },

    async rollback(btn) {
      const name = btn.dataset.flag;
      const version = Number(btn.dataset.version);
      const box = messageBox(btn);
      const base = baseOf(btn);
      const sure = await confirmAction(
        "Roll back " + name + " to version " + version + "?",
        "This replaces " + name + "'s current document with the one it had at version " + version +
          ", for everyone, at once. The change is recorded and can itself be rolled back.",
        "Roll back " + name,
        true,
        true,
      );
      if (!sure) return;
      const payload = { version: version };
      const comment = $("#confirm-comment").value.trim();
      if (comment) payload.comment = comment;
      const res = await call("POST", flagUrl(name, "/rollback"), payload, ifMatch(base));
      if (res.ok) {
        show(box, "ok", name + " rolled back to the document of version " + version + " (now version " + res.data.version + ").");
        announce(name + " rolled back to version " + version);
        refresh();
      } else if (res.status === 409) {
        await showConflict(box, name, base, res);
      } else {
        show(box, "error", errorText(res), res.data.problems);
      }
    },

    async "remove-member"(btn) {
      const kind = btn.dataset.kind; // users | groups
      const member = btn.dataset.member;
      const name = btn.dataset.flag;
      const noun = kind.slice(0, -1);
      const sure = await confirmAction(
        "Remove " + noun + " " + member + " from " + name + "?",
        name + " stops being on for " + noun + " " + member + " through this list, at once.",
        "Remove " + noun + " " + member,
        true,
      );
      if (!sure) return;
      const extra = {};
      extra[kind] = [member];
      await patch(name, "remove_" + kind, extra, messageBox(btn), "Removed " + member, baseOf(btn));
    },

    "add-variant"(btn) {
      const tbody = $("[data-variants]", btn.closest("form"));
      const rows = $$("tr[data-variant]", tbody);
      const tr = rows.length ? rows[rows.length - 1].cloneNode(true) : null;
      if (!tr) return;
      const n = rows.length + 1;
      const [nameInput, weightInput] = $$("input", tr);
      nameInput.value = "";
      weightInput.value = "";
      nameInput.setAttribute("aria-label", "Variant " + n + " name");
      weightInput.setAttribute("aria-label", "Variant " + n + " weight, percent");
      const rm = $("button", tr);
      if (rm) rm.setAttribute("aria-label", "Remove variant " + n);
      tbody.append(tr);
      btn.closest("form").dataset.dirty = "1";
      nameInput.focus();
    },

    "remove-variant"(btn) {
      const form = btn.closest("form");
      const tr = btn.closest("tr");
      if ($$("tr[data-variant]", form).length > 1) tr.remove();
      form.dataset.dirty = "1";
      const first = $("tr[data-variant] input", form);
      if (first) first.focus();
    },

    "validate-experiment"(btn) {
      return saveDocument(btn.closest("form"), experimentDocument, false);
    },

    "validate-document"(btn) {
      return saveDocument(btn.closest("form"), textDocument, false);
    },

    "validate-segment"(btn) {
      return saveSegment(btn.closest("form"), false);
    },

    // Delete a segment with the version the page showed. The server refuses (409,
    // used_by) while flags use it: the message lists them and nothing is deleted.
    async "delete-segment"(btn) {
      const name = btn.dataset.segment;
      const box = messageBox(btn);
      const base = baseOf(btn);
      const sure = await confirmAction(
        "Delete segment " + name + "?",
        "This deletes the segment " + name + " for everyone, at once. It is refused while a flag uses it.",
        "Delete " + name,
        true,
      );
      if (!sure) return;
      const res = await call("DELETE", segmentUrl(name), undefined, ifMatch(base));
      if (res.ok) {
        show(box, "ok", "Segment " + name + " deleted.");
        announce("Segment " + name + " deleted");
        location.assign(root + "/segments");
      } else if (res.status === 409 && res.data.used_by) {
        show(box, "error", "Not deleted: " + name + " is used by these flags. Remove it from them first.", res.data.used_by);
        box.focus();
      } else {
        show(box, "error", "Not deleted: " + segmentError(res), res.data.problems);
        box.focus();
      }
    },
  };

  // ------------------------------------------------------------------ editors

  function currentFlag() {
    const el = $("#flag-data");
    return el ? JSON.parse(el.textContent) : null;
  }

  // The document with the experiment editor's variants, id and switch applied.
  // Returns {document} or {error}. Never repairs input: a bad weight goes to the
  // server's validation as typed, so the operator sees the real message.
  async function experimentDocument(form) {
    const flag = currentFlag();
    let source = flag.document;
    if (flag.large) {
      // Too large to carry in the page: read it now. The write still names the
      // version the form was rendered from, so a newer document is refused.
      const res = await call("GET", flagUrl(flag.name));
      if (!res.ok) return { problems: [errorText(res)] };
      source = res.data.document;
    }
    const doc = JSON.parse(JSON.stringify(source));
    const variants = {};
    const problems = [];
    $$("tr[data-variant]", form).forEach(function (tr, i) {
      const [nameInput, weightInput] = $$("input", tr);
      nameInput.removeAttribute("aria-invalid");
      weightInput.removeAttribute("aria-invalid");
      const name = nameInput.value.trim();
      const raw = weightInput.value.trim();
      if (!name) {
        problems.push("variant " + (i + 1) + ": give it a name");
        nameInput.setAttribute("aria-invalid", "true");
      } else if (name in variants) {
        problems.push("variant " + name + ": listed twice");
        nameInput.setAttribute("aria-invalid", "true");
      }
      const weight = raw === "" ? NaN : Number(raw);
      if (Number.isNaN(weight)) {
        problems.push("variant " + (name || i + 1) + ": the weight must be a number");
        weightInput.setAttribute("aria-invalid", "true");
      }
      variants[name] = weight;
    });
    if (problems.length) return { problems: problems };
    const exp = Object.assign({}, doc.experiment, { variants: variants });
    const id = form.elements.experiment_id.value.trim();
    if (id === "") delete exp.experiment_id;
    else exp.experiment_id = Number(id);
    if (form.elements.enabled.checked) delete exp.enabled;
    else exp.enabled = false;
    doc.experiment = exp;
    return { document: doc };
  }

  function textDocument(form) {
    try {
      return { document: JSON.parse(form.elements.document.value) };
    } catch (e) {
      return { problems: ["not valid JSON: " + e.message] };
    }
  }

  // Mark the inputs of variants that the server's problems name.
  function markVariantProblems(form, problems) {
    for (const p of problems || []) {
      const path = typeof p === "string" ? p : p.path || "";
      const m = /^experiment\.variants\.(.+)$/.exec(path);
      if (!m) continue;
      for (const tr of $$("tr[data-variant]", form)) {
        const [nameInput, weightInput] = $$("input", tr);
        if (nameInput.value.trim() === m[1]) weightInput.setAttribute("aria-invalid", "true");
      }
    }
  }

  // Validate (always) and then, if `save`, write with compare-and-set on the
  // version the form was rendered from. A refused edit writes nothing.
  async function saveDocument(form, build, save) {
    const box = $(".msg", form);
    const name = form.dataset.flag;
    const built = await build(form);
    if (built.problems) {
      show(box, "error", "Not saved: fix these first.", built.problems);
      box.focus();
      return;
    }
    const check = await call("POST", api + "/validate", { name: name, document: built.document });
    if (!check.ok || !check.data.ok) {
      const problems = check.data.problems || [];
      show(box, "error", (save ? "Not saved: " : "") + (check.ok ? "the flag would be invalid." : errorText(check)), problems);
      markVariantProblems(form, problems);
      box.focus();
      return;
    }
    if (!save) {
      show(box, "ok", "Valid. Nothing is saved until you press Save.");
      return;
    }
    const res = await call("PUT", flagUrl(name), { document: built.document }, ifMatch(form.dataset.version));
    if (res.ok) {
      delete form.dataset.dirty;
      show(box, "ok", "Saved as version " + res.data.version + ".");
      announce(name + " saved");
      refresh();
    } else if (res.status === 409) {
      await showConflict(box, name, form.dataset.version, res);
      box.focus();
    } else {
      show(box, "error", "Not saved: " + errorText(res), res.data.problems);
      markVariantProblems(form, res.data.problems);
      box.focus();
    }
  }

  // ------------------------------------------------------------------ segments

  function segmentUrl(name) {
    return api + "/segments/" + encodeURIComponent(name);
  }

  function segmentError(res) {
    const d = res.data || {};
    if (res.status === 409 && d.current_version !== undefined) {
      return (
        "someone else changed the segment meanwhile (it is now at version " + d.current_version +
        "). Nothing was overwritten: reload the page to start from the current version."
      );
    }
    return errorText(res);
  }

  // As saveDocument, for a segment: the same checks (POST /validate with the
  // segment's key) and the same compare-and-set write (If-Match, or for a new
  // segment If-None-Match: *, so an existing one is never overwritten).
  async function saveSegment(form, save, name, create) {
    const box = $(".msg", form);
    name = name || form.dataset.segment;
    const built = textDocument(form);
    if (built.problems) {
      show(box, "error", "Not saved: fix these first.", built.problems);
      box.focus();
      return;
    }
    const check = await call("POST", api + "/validate", { name: "segment:" + name, document: built.document });
    if (!check.ok || !check.data.ok) {
      const problems = check.data.problems || [];
      show(box, "error", (save ? "Not saved: " : "") + (check.ok ? "the segment would be invalid." : errorText(check)), problems);
      box.focus();
      return;
    }
    if (!save) {
      show(box, "ok", "Valid. Nothing is saved until you press Save.");
      return;
    }
    const headers = create ? { "If-None-Match": "*" } : ifMatch(form.dataset.version);
    const res = await call("PUT", segmentUrl(name), { document: built.document }, headers);
    if (res.ok) {
      delete form.dataset.dirty;
      if (create) {
        location.assign(root + "/segments/" + encodeURIComponent(name));
        return;
      }
      show(box, "ok", "Saved as version " + res.data.version + ".");
      announce("Segment " + name + " saved");
      refresh();
    } else {
      const exists = create && res.status === 409;
      show(box, "error", "Not saved: " + (exists ? "a segment named " + name + " exists already." : segmentError(res)), res.data.problems);
      box.focus();
    }
  }

  const forms = {
    percentage(form) {
      const value = Number(form.elements.percentage.value);
      const box = $(".msg", form);
      if (form.elements.percentage.value.trim() === "" || Number.isNaN(value) || value < 0 || value > 100) {
        show(box, "error", "The percentage must be a number from 0 to 100.");
        return;
      }
      const name = form.dataset.flag;
      return patch(name, "set_percentage", { percentage: value }, box, name + " at " + value + "%", baseOf(form)).then(
        function (res) {
          if (res.ok) delete form.dataset.dirty;
        },
      );
    },
    "add-member"(form) {
      const kind = form.dataset.kind;
      const noun = kind.slice(0, -1);
      // "erin, frank" or "erin frank" is two ids: ids hold no commas or spaces.
      const members = form.elements.member.value.split(/[\s,]+/).filter(Boolean);
      const box = messageBox(form);
      if (!members.length) {
        show(box, "error", "Type a " + noun + " id to add (several: separate them with commas or spaces).");
        form.elements.member.focus();
        return;
      }
      const extra = {};
      extra[kind] = members;
      const list = members.join(", ");
      const there = list + (members.length > 1 ? ": already there, nothing changed." : " is already there: nothing changed.");
      return patch(form.dataset.flag, "add_" + kind, extra, box, "Added " + list, baseOf(form), there).then(function (res) {
        if (res.ok) {
          form.elements.member.value = "";
          delete form.dataset.dirty;
        }
      });
    },
    experiment(form) {
      return saveDocument(form, experimentDocument, true);
    },
    document(form) {
      return saveDocument(form, textDocument, true);
    },
    "segment-document"(form) {
      return saveSegment(form, true);
    },
    "new-segment"(form) {
      const name = form.elements.name.value.trim();
      if (!name) {
        show($(".msg", form), "error", "Give the segment a name.");
        form.elements.name.focus();
        return;
      }
      return saveSegment(form, true, name, true);
    },
  };

  document.addEventListener("click", function (ev) {
    const btn = ev.target.closest("[data-action]");
    if (!btn || !(btn.dataset.action in actions)) return;
    ev.preventDefault();
    actions[btn.dataset.action](btn);
  });

  document.addEventListener("submit", function (ev) {
    const form = ev.target.closest("form[data-form]");
    if (!form || !(form.dataset.form in forms)) return;
    ev.preventDefault();
    forms[form.dataset.form](form);
  });

  document.addEventListener("input", function (ev) {
    const form = ev.target.closest("form[data-form]");
    if (form) form.dataset.dirty = "1";
    if (ev.target.id === "pct-range") $("#pct-number").value = ev.target.value;
    if (ev.target.id === "pct-number" && ev.target.value !== "") $("#pct-range").value = ev.target.value;
    if (ev.target.closest("#filters")) applyFilters();
  });

  // ------------------------------------------------------------------ filters

  function applyFilters() {
    const form = $("#filters");
    if (!form) return;
    const el = form.elements;
    const words = el.q.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const want = { state: el.state.value, kind: el.kind.value, owner: el.owner.value, tag: el.tag.value };
    want.archived = el.archived ? el.archived.value : ""; // "" hides archived flags, "only", "all"
    let shown = 0;
    for (const tr of $$("#flag-rows tr[data-flag]")) {
      const d = tr.dataset;
      const ok =
        words.every(function (w) {
          return d.text.includes(w);
        }) &&
        (!want.state || d.state === want.state) &&
        (!want.kind || (want.kind === "stale" ? d.stale === "yes" : d.kind === want.kind)) &&
        (!want.owner || d.owner === want.owner) &&
        (!want.tag || d.tags.split(" ").includes(want.tag)) &&
        (want.archived === "all" || (want.archived === "only") === (d.archived === "yes"));
      tr.hidden = !ok;
      if (ok) shown += 1;
    }
    const none = $("#no-match");
    if (none) none.hidden = shown > 0;
    const count = $("#flag-count [data-shown]");
    if (count) count.textContent = String(shown);
    const params = new URLSearchParams();
    if (el.q.value.trim()) params.set("q", el.q.value.trim());
    for (const k of ["state", "kind", "owner", "tag", "archived"]) if (want[k]) params.set(k, want[k]);
    // A list past one page is paged by the server: the page shown stays in the link.
    const page = new URLSearchParams(location.search).get("page");
    if (page && $("table.flags[data-paged]")) params.set("page", page);
    const qs = params.toString();
    history.replaceState(null, "", location.pathname + (qs ? "?" + qs : ""));
  }

  document.addEventListener("change", function (ev) {
    if (ev.target.closest("#filters")) applyFilters();
  });

  document.addEventListener("keydown", function (ev) {
    // "/" jumps to the search box, as in many consoles.
    const typing = ev.target.closest("input, textarea, select, [contenteditable]");
    if (ev.key === "/" && !typing && $("#f-q")) {
      ev.preventDefault();
      $("#f-q").focus();
    }
  });

  // ------------------------------------------------------------------ live updates

  let refreshing = false;
  let again = false;

  // Fetch the page again and swap its live regions. Calls made while one runs
  // coalesce into one more run, so a burst of changes costs two fetches.
  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      do {
        again = false;
        await swapLiveRegions();
      } while (again);
    } finally {
      refreshing = false;
    }
  }

  async function swapLiveRegions() {
    let html;
    try {
      const res = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (res.status === 404 && (page === "flag" || page === "segment")) {
        showBanner("This " + page + " was deleted.");
        return;
      }
      if (res.status === 401 || (res.redirected && new URL(res.url).pathname.endsWith("/login"))) {
        signOut();
        return;
      }
      if (!res.ok) return;
      html = await res.text();
    } catch (e) {
      return;
    }
    const fresh = new DOMParser().parseFromString(html, "text/html");
    const before = versions();
    const focus = focusKey(document.activeElement);
    let kept = false;
    for (const region of $$("[data-live][id]", fresh)) {
      const old = document.getElementById(region.id);
      if (!old) continue;
      // An editor with unsaved edits is kept whole; a half-typed name in an
      // "add" box is carried over into the fresh region.
      if ($$("form[data-dirty]", old).some((f) => f.dataset.form !== "add-member")) {
        kept = true;
        continue;
      }
      for (const input of $$("form[data-dirty] input[id]", old)) {
        const twin = region.querySelector("#" + CSS.escape(input.id));
        if (twin) twin.value = input.value;
      }
      // Keep messages the operator has not read yet.
      for (const msg of $$(".msg[id]", old)) {
        const twin = region.querySelector("#" + CSS.escape(msg.id));
        if (twin && msg.textContent) twin.replaceWith(msg);
      }
      old.replaceWith(document.adoptNode(region));
    }
    const dataId = page === "segment" ? "#segment-data" : "#flag-data";
    const data = $(dataId, fresh);
    if (data && $(dataId)) $(dataId).textContent = data.textContent;
    if (focus && (document.activeElement === body || !document.activeElement)) {
      const again = document.querySelector(focus);
      if (again) again.focus();
    }
    applyFilters();
    const after = versions();
    for (const name in after) {
      if (before[name] !== undefined && before[name] !== after[name]) {
        const row = document.getElementById("flag-" + name);
        if (row) row.classList.add("flash");
      }
    }
    // Our own write's echo can arrive before its answer, while the form is still
    // marked dirty: that is not someone else's change (the answer's refresh
    // swaps the editor). Only a version we did not write raises the banner.
    const freshData = data ? JSON.parse(data.textContent) : null;
    const freshKey = freshData && (page === "segment" ? "segment:" : "") + freshData.name;
    const ours = freshData && written.has(freshKey + "@" + freshData.version);
    if (kept && inflight === 0 && !ours) {
      showBanner(
        "This " + page + " changed while you were editing. Your unsaved edits are kept, but they are based on an older " +
          "version: saving them will be refused. Reload the page to start from the current version.",
      );
    }
  }

  // A selector finding "the same place" after a region is replaced: the
  // element's id, else the first button of the same flag's row.
  function focusKey(el) {
    if (!el || el === body) return null;
    if (el.id) return "#" + CSS.escape(el.id);
    const row = el.closest("tr[data-flag]");
    if (row && row.id) return "#" + CSS.escape(row.id) + " button";
    return null;
  }

  function versions() {
    const out = {};
    for (const tr of $$("#flag-rows tr[data-flag]")) out[tr.dataset.flag] = tr.dataset.version;
    return out;
  }

  function showBanner(text) {
    const banner = $("#changed-banner");
    if (!banner) return;
    banner.textContent = text;
    banner.hidden = false;
  }

  function setLive(state, text) {
    const el = $("#live-state");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }

  // Writes made by another script of the page (static/editors.js) are ours too.
  document.addEventListener("flagstaff:written", function (ev) {
    if (ev.detail && ev.detail.name) written.add(ev.detail.name + "@" + ev.detail.version);
  });

  function onChange(change) {
    const flag = currentFlag();
    if (flag && change.name !== flag.name) return;
    const ours = written.has(change.name + "@" + change.version);
    if (!ours) {
      const what = change.document === null ? " was deleted" : " changed (version " + change.version + ")";
      announce(change.name + what + " by someone else");
    }
    refresh();
  }

  let source = null;
  let opened = false;
  let retryTimer = null;

  function closeStream() {
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
    if (source) source.close();
    source = null;
  }

  // Is the session still good? A 401 here signs the page out.
  async function checkSession() {
    const res = await call("GET", api + "/history?limit=1");
    return res.status !== 401;
  }

  function follow() {
    const url = body.dataset.events;
    if (!url || !window.EventSource || signedOut) return;
    source = new EventSource(url);
    source.onopen = function () {
      setLive("live", "Live updates: on");
      // Changes made while the stream was down were never sent: read the page again.
      if (opened) refresh();
      opened = true;
    };
    source.onerror = function () {
      if (signedOut) return;
      setLive("down", "Live updates: reconnecting");
      if (source && source.readyState === EventSource.CLOSED) {
        // The browser gave up (a 401 or another refused answer): find out
        // which, and either sign out or start again after a pause.
        closeStream();
        checkSession().then(function (ok) {
          if (ok && !signedOut) retryTimer = setTimeout(follow, 3000);
        });
      }
    };
    source.addEventListener("change", function (ev) {
      let change;
      try {
        change = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      onChange(change);
    });
  }

  // A page left open keeps its stream, and Chrome allows six connections per
  // host: close it when the page is hidden for navigation, reopen if restored.
  window.addEventListener("pagehide", closeStream);
  window.addEventListener("pageshow", function (ev) {
    if (ev.persisted && !source && !signedOut) follow();
  });

  applyFilters();
  follow();
})();
