// flagstaff editors: create, archive, restore and delete flags; the rule builder and
// the value editor on a flag's page. Vanilla JS, no build step, no third party.
//
// Like flagstaff.js, every write goes through the JSON API with the session's CSRF
// token and If-Match on the version the page was rendered from, and every document
// is checked with POST /api/v1/validate first, so the messages are the parser's own.
// The rule builder edits `targeting`, `default` and `values` of the document and
// keeps every other key (and any key of a rule it does not show) as it was.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const root = document.body.dataset.root || "";
  const api = root + "/api/v1";
  const csrf = ($('meta[name="csrf-token"]') || {}).content || "";

  // ------------------------------------------------------------------ helpers

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
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      return { ok: false, status: 0, data: { error: "The server cannot be reached: " + e.message } };
    }
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = null;
    }
    return { ok: res.ok, status: res.status, data: data || {} };
  }

  // Tell flagstaff.js which version a write of ours will make (If-Match N makes N + 1), before
  // sending it: the change's echo on the event stream can come before the answer, and must
  // not be announced as someone else's.
  function expectWrite(key, base) {
    if (!base) return;
    const detail = { name: key, version: Number(base) + 1 };
    document.dispatchEvent(new CustomEvent("flagstaff:written", { detail: detail }));
  }

  function flagUrl(name, rest) {
    return api + "/flags/" + encodeURIComponent(name) + (rest || "");
  }

  function ifMatch(version) {
    return version ? { "If-Match": '"' + version + '"' } : {};
  }

  function problemText(p) {
    if (typeof p === "string") return p;
    return p && p.path ? p.path + ": " + p.message : (p && p.message) || String(p);
  }

  // Our boxes are .emsg, not .msg: flagstaff.js writes a control's message into the first
  // .msg of its section (on the list page, main), which must stay the page's own.
  function show(el, kind, text, problems) {
    if (!el) return;
    el.className = "emsg " + kind;
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
      return "someone else changed the flag meanwhile (it is now at version " + d.current_version + "); nothing was overwritten. Reload to see it.";
    }
    if (res.status === 409 && d.used_by) return d.error;
    return d.error || "request failed (HTTP " + res.status + ")";
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "value") node.value = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children || []) node.append(c);
    return node;
  }

  function words(text) {
    return text.split(/[\s,]+/).filter(Boolean);
  }

  function confirmed(title, text, okLabel) {
    const dialog = $("#confirm");
    if (!dialog || !dialog.showModal) return Promise.resolve(window.confirm(text));
    const opener = document.activeElement;
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#confirm-ok").textContent = okLabel;
    $("#confirm-ok").className = "danger";
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
      $("#confirm-cancel").focus();
    });
  }

  // ------------------------------------------------------------------ create a flag

  async function createFlag(form) {
    const box = $("#create-msg");
    const f = form.elements;
    const name = f.name.value.trim();
    if (!name) {
      f.name.setAttribute("aria-invalid", "true");
      show(box, "error", "Not created: a flag needs a name.");
      f.name.focus();
      return;
    }
    const doc = { enabled: f.start.value === "on" ? "on" : "off", kind: f.kind.value };
    if (f.owner.value.trim()) doc.owner = f.owner.value.trim();
    const tags = words(f.tags.value);
    if (tags.length) doc.tags = tags;
    if (f.description.value.trim()) doc.description = f.description.value.trim();
    const body = { name: name, document: doc };
    if (f.comment.value.trim()) body.comment = f.comment.value.trim();
    const res = await call("POST", api + "/flags", body);
    if (res.ok) {
      show(box, "ok", "Created " + name + ". Opening it…");
      window.location.assign(root + "/flags/" + encodeURIComponent(name));
      return;
    }
    const problems = res.data.problems || [];
    const taken = res.status === 409;
    f.name.setAttribute("aria-invalid", taken || res.status === 422 ? "true" : "false");
    const why = taken ? "a flag named '" + name + "' already exists." : errorText(res);
    show(box, "error", "Not created: " + why, problems);
    box.focus();
  }

  // ------------------------------------------------------------------ archive, restore, delete

  async function lifecycle(btn) {
    const name = btn.dataset.flag;
    const action = btn.dataset.editorAction;
    const panel = btn.closest("[data-base]");
    const version = panel ? panel.dataset.base : "";
    const box = $("#lifecycle-msg");
    const input = $("#lifecycle-comment");
    const comment = input ? input.value.trim() : "";
    let res;
    if (action === "delete") {
      const ok = await confirmed("Delete " + name + "?", "The flag is removed from the store: applications get their default. Archive it instead to keep it restorable.", "Delete");
      if (!ok) return;
      const qs = comment ? "?comment=" + encodeURIComponent(comment) : "";
      res = await call("DELETE", flagUrl(name, qs), undefined, ifMatch(version));
      if (res.ok) {
        show(box, "ok", "Deleted. Back to the list…");
        window.location.assign(root + "/");
        return;
      }
    } else {
      if (action === "archive") {
        const ok = await confirmed("Archive " + name + "?", "It will be off for everyone (reason archived) until restored.", "Archive");
        if (!ok) return;
      }
      const body = { op: action };
      if (comment) body.comment = comment;
      expectWrite(name, version);
      res = await call("PATCH", flagUrl(name), body, ifMatch(version));
      if (res.ok) {
        show(box, "ok", (action === "archive" ? "Archived" : "Restored") + " (version " + res.data.version + "). Reloading…");
        window.location.reload();
        return;
      }
    }
    show(box, "error", "Not done: " + errorText(res), res.data.problems);
    box.focus();
  }

  // ------------------------------------------------------------------ rule builder

  const builder = $("#rules-editor");
  const flagData = $("#flag-data") ? JSON.parse($("#flag-data").textContent) : null;
  const editorData = $("#editor-data") ? JSON.parse($("#editor-data").textContent) : null;
  const canWrite = !!$("#rules-editor button[type=submit], #segment-editor button[type=submit]");
  let ruleSeq = 0;
  let conditionSeq = 0;

  // A document as an object (as flagstaff.edits.as_object): "on" -> {enabled: "on"}, a
  // number -> {percentage: n}, "off" or nothing -> {}.
  function asObject(doc) {
    if (doc && typeof doc === "object" && !Array.isArray(doc)) return Object.assign({}, doc);
    if (doc === true || doc === "on") return { enabled: "on" };
    if (typeof doc === "number") return { percentage: doc };
    return {};
  }

  function valueText(v) {
    if (v === undefined) return "";
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  // What a condition's value box means: JSON when it reads as JSON (numbers, true, lists),
  // else the text itself; "in" takes a comma-separated list.
  function parseValue(text, op) {
    const t = text.trim();
    if (op === "in" && !t.startsWith("[")) return words(t).map((w) => parseValue(w, "eq"));
    try {
      return JSON.parse(t);
    } catch (e) {
      return t;
    }
  }

  function shownValue(v, op) {
    if (op === "in" && Array.isArray(v) && v.every((x) => typeof x !== "object" || x === null)) {
      return v.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join(", ");
    }
    return valueText(v);
  }

  function disabled() {
    return canWrite ? null : true;
  }

  function select(attrs, options, chosen) {
    const s = el("select", Object.assign({ disabled: disabled() }, attrs));
    for (const [value, label] of options) {
      const o = el("option", { value: value, text: label });
      if (value === chosen) o.selected = true;
      s.append(o);
    }
    return s;
  }

  // ---- conditions

  function conditionRow(id, clause) {
    const li = el("li", { class: "condition", "data-condition": "" });
    conditionSeq += 1;
    const n = conditionSeq; // unique in the page: the ids below are built from it
    const label = "Condition";
    if (!clause || typeof clause !== "object" || !("attribute" in clause)) {
      // A group ({"all": [...]}) or something else: edited as JSON.
      li.dataset.raw = "1";
      li.append(
        el("label", { class: "sr-only", for: id + "-raw-" + n, text: label + " (JSON)" }),
        el("input", { id: id + "-raw-" + n, class: "raw", value: JSON.stringify(clause), disabled: disabled(), "aria-label": label + " (JSON)" }),
      );
    } else {
      const ops = ((editorData || segData || {}).operators || []).map((o) => [o, o.replace(/_/g, " ")]);
      li.append(
        el("input", { class: "attr", value: clause.attribute, placeholder: "attribute", "aria-label": label + ": attribute", disabled: disabled(), autocomplete: "off" }),
        select({ class: "op", "aria-label": label + ": operator" }, ops, clause.op),
        el("input", { class: "val", value: shownValue(clause.value, clause.op), placeholder: "value", "aria-label": label + ": value", disabled: disabled(), autocomplete: "off" }),
      );
      const neg = el("input", { type: "checkbox", class: "neg", id: id + "-neg-" + n, disabled: disabled() });
      neg.checked = clause.negate === true;
      li.append(neg, el("label", { for: id + "-neg-" + n, text: "not" }));
    }
    if (canWrite) {
      li.append(el("button", { type: "button", class: "link", "data-editor-action": "remove-condition", "aria-label": "Remove " + label.toLowerCase(), text: "Remove" }));
    }
    return li;
  }

  function readCondition(li) {
    if (li.dataset.raw) {
      const text = $("input.raw", li).value;
      try {
        return { clause: JSON.parse(text) };
      } catch (e) {
        return { problem: "a condition is not valid JSON: " + text };
      }
    }
    const attribute = $("input.attr", li).value.trim();
    const op = $("select.op", li).value;
    if (!attribute) return { problem: "a condition needs an attribute" };
    const clause = { attribute: attribute, op: op };
    const text = $("input.val", li).value;
    if (op !== "exists" || text.trim()) clause.value = parseValue(text, op);
    if ($("input.neg", li).checked) clause.negate = true;
    return { clause: clause };
  }

  // ---- serves: on, off, a percentage, a variant, a split

  function serveKind(serve) {
    if (serve === undefined) return "none";
    if (serve === true || serve === "on") return "on";
    if (serve === false || serve === "off") return "off";
    if (serve && typeof serve === "object") {
      if ("variant" in serve) return "variant";
      if ("percentage" in serve) return "percentage";
      if ("variants" in serve) return "split";
    }
    return "json";
  }

  function serveBox(holder, id, serve, allowNone) {
    holder.textContent = "";
    holder.dataset.original = JSON.stringify(serve === undefined ? null : serve);
    const kind = serveKind(serve);
    const options = [["on", "on"], ["off", "off"], ["percentage", "on for a percentage"], ["variant", "a variant"], ["split", "a split of variants"], ["json", "JSON"]];
    if (allowNone) options.unshift(["none", "nothing (the flag's other keys decide)"]);
    const sel = select({ class: "serve-kind", id: id + "-serve", "data-serve-kind": "" }, options, kind);
    holder.append(el("label", { for: id + "-serve", text: "Serve" }), sel);
    const detail = el("span", { class: "serve-detail" });
    holder.append(detail);
    serveDetail(detail, id, kind, serve);
  }

  function variantNames() {
    const names = new Set((editorData.variants || []).concat(editorData.experiment_variants || []));
    for (const input of $$("#value-rows input.vkey")) if (input.value.trim() && !["on", "off"].includes(input.value.trim())) names.add(input.value.trim());
    return Array.from(names);
  }

  function serveDetail(detail, id, kind, serve) {
    detail.textContent = "";
    const obj = serve && typeof serve === "object" ? serve : {};
    if (kind === "percentage") {
      detail.append(
        el("input", { type: "number", class: "pct", id: id + "-pct", min: "0", max: "100", step: "any", value: obj.percentage !== undefined ? String(obj.percentage) : "", disabled: disabled(), "aria-label": "Percentage served on" }),
        el("span", { text: "%" }),
      );
    } else if (kind === "variant") {
      const list = el("datalist", { id: id + "-variants" }, variantNames().map((v) => el("option", { value: v })));
      detail.append(el("input", { class: "variant", list: id + "-variants", value: obj.variant || "", placeholder: "variant", disabled: disabled(), "aria-label": "Variant served", autocomplete: "off" }), list);
    } else if (kind === "split") {
      const text = Object.entries(obj.variants || {}).map(([k, v]) => k + "=" + v).join(", ");
      detail.append(el("input", { class: "split", value: text, placeholder: "a=50, b=50", disabled: disabled(), "aria-label": "Split: variant=percent, comma separated", autocomplete: "off" }));
    } else if (kind === "json") {
      detail.append(el("input", { class: "serve-json", value: serve === undefined ? "" : JSON.stringify(serve), disabled: disabled(), "aria-label": "Serve (JSON)", autocomplete: "off" }));
    }
  }

  function readServe(holder) {
    const kind = $("select.serve-kind", holder).value;
    const original = JSON.parse(holder.dataset.original || "null");
    const keep = original && typeof original === "object" && original.bucket_by !== undefined ? { bucket_by: original.bucket_by } : {};
    if (kind === "none") return { none: true };
    if (kind === "on" || kind === "off") return { serve: kind };
    if (kind === "percentage") {
      const text = $("input.pct", holder).value.trim();
      const n = Number(text);
      if (text === "" || !Number.isFinite(n)) return { problem: "a percentage serve needs a number from 0 to 100" };
      return { serve: Object.assign({ percentage: n }, keep) };
    }
    if (kind === "variant") {
      const v = $("input.variant", holder).value.trim();
      if (!v) return { problem: "a variant serve needs the variant's name" };
      return { serve: Object.assign({ variant: v }, keep) };
    }
    if (kind === "split") {
      const variants = {};
      for (const part of $("input.split", holder).value.split(",")) {
        if (!part.trim()) continue;
        const [k, v] = part.split("=");
        const n = Number((v || "").trim());
        if (!k || !k.trim() || v === undefined || !Number.isFinite(n)) return { problem: "a split is variant=percent pairs, such as a=50, b=50; not " + JSON.stringify(part.trim()) };
        variants[k.trim()] = n;
      }
      return { serve: Object.assign({ variants: variants }, keep) };
    }
    try {
      return { serve: JSON.parse($("input.serve-json", holder).value) };
    } catch (e) {
      return { problem: "the serve is not valid JSON" };
    }
  }

  // ---- rules

  function segmentPicker(id, label, chosen, cls) {
    const names = (editorData.segments || []).slice();
    for (const c of chosen) if (!names.includes(c)) names.push(c); // a dangling name stays visible
    const box = el("fieldset", { class: "segments " + cls }, [el("legend", { text: label })]);
    if (!names.length) box.append(el("span", { class: "hint", text: "no segments yet" }));
    names.forEach(function (name, i) {
      const cb = el("input", { type: "checkbox", id: id + "-" + cls + "-" + i, value: name, disabled: disabled() });
      cb.checked = chosen.includes(name);
      box.append(el("span", { class: "pick" }, [cb, el("label", { for: id + "-" + cls + "-" + i, text: name })]));
    });
    return box;
  }

  function listOf(v) {
    if (v === undefined) return [];
    return Array.isArray(v) ? v : [v];
  }

  function ruleRow(rule) {
    ruleSeq += 1;
    const id = "rule-" + ruleSeq;
    const r = rule && typeof rule === "object" ? rule : {};
    const li = el("li", { class: "rule", "data-rule-row": "", id: id });
    li.dataset.original = JSON.stringify(r);
    const head = el("div", { class: "row" }, [
      el("label", { for: id + "-name", text: "Rule name" }),
      el("input", { id: id + "-name", class: "rname", value: r.name || "", placeholder: "optional", disabled: disabled(), autocomplete: "off" }),
    ]);
    if (canWrite) {
      head.append(
        el("button", { type: "button", class: "link", "data-editor-action": "rule-up", "aria-label": "Move rule up", text: "Up" }),
        el("button", { type: "button", class: "link", "data-editor-action": "rule-down", "aria-label": "Move rule down", text: "Down" }),
        el("button", { type: "button", class: "link", "data-editor-action": "remove-rule", "aria-label": "Remove rule", text: "Remove rule" }),
      );
    }
    li.append(head);
    const who = el("div", { class: "row" }, [
      el("label", { for: id + "-users", text: "Users" }),
      el("input", { id: id + "-users", class: "users", value: listOf(r.users).join(", "), disabled: disabled(), autocomplete: "off", placeholder: "ids, comma separated" }),
      el("label", { for: id + "-groups", text: "Groups" }),
      el("input", { id: id + "-groups", class: "groups", value: listOf(r.groups).join(", "), disabled: disabled(), autocomplete: "off", placeholder: "comma separated" }),
    ]);
    li.append(who);
    const conds = el("ol", { class: "conditions", id: id + "-conds", "aria-label": "Conditions (all must hold)" });
    li.append(el("p", { class: "hint", text: "Conditions (all must hold):" }), conds);
    for (const clause of listOf(r.when)) conds.append(conditionRow(id, clause));
    if (canWrite) li.append(el("button", { type: "button", "data-editor-action": "add-condition", text: "Add condition" }));
    li.append(segmentPicker(id, "In any of these segments", listOf(r.segments), "in-seg"));
    li.append(segmentPicker(id, "In none of these segments", listOf(r.not_segments), "not-seg"));
    const serve = el("div", { class: "row serve-row", "data-serve": "rule" });
    li.append(serve);
    serveBox(serve, id, r.serve === undefined ? "on" : r.serve, false);
    return li;
  }

  function readRule(li, index) {
    const original = JSON.parse(li.dataset.original || "{}");
    const rule = {};
    // Keys the builder does not show are kept (a future key, bucket_by on a rule).
    for (const [k, v] of Object.entries(original)) if (!["name", "users", "groups", "when", "segments", "not_segments", "serve"].includes(k)) rule[k] = v;
    const problems = [];
    const at = "targeting[" + index + "]";
    const name = $("input.rname", li).value.trim();
    if (name) rule.name = name;
    const users = words($("input.users", li).value);
    if (users.length) rule.users = users;
    const groups = words($("input.groups", li).value);
    if (groups.length) rule.groups = groups;
    const when = [];
    for (const c of $$("li[data-condition]", li)) {
      const got = readCondition(c);
      if (got.problem) problems.push({ path: at + ".when", message: got.problem });
      else when.push(got.clause);
    }
    if (when.length) rule.when = when;
    const inSeg = $$("fieldset.in-seg input:checked", li).map((c) => c.value);
    if (inSeg.length) rule.segments = inSeg;
    const notSeg = $$("fieldset.not-seg input:checked", li).map((c) => c.value);
    if (notSeg.length) rule.not_segments = notSeg;
    const serve = readServe($("[data-serve=rule]", li));
    if (serve.problem) problems.push({ path: at + ".serve", message: serve.problem });
    else rule.serve = serve.serve;
    return { rule: rule, problems: problems };
  }

  // ---- values

  function valueType(v) {
    if (typeof v === "boolean") return "boolean";
    if (typeof v === "number") return "number";
    if (typeof v === "string") return "string";
    return "json";
  }

  function valueRow(key, value) {
    const n = $$("#value-rows tr").length + 1;
    const type = value === undefined ? "string" : valueType(value);
    const tr = el("tr", { "data-value-row": "" });
    tr.append(
      el("td", {}, [el("input", { class: "vkey", value: key || "", "aria-label": "Value " + n + ": served (variant, on or off)", disabled: disabled(), autocomplete: "off" })]),
      el("td", {}, [select({ class: "vtype", "aria-label": "Value " + n + ": type" }, [["string", "text"], ["number", "number"], ["boolean", "true/false"], ["json", "JSON"]], type)]),
      el("td", {}, [el("input", { class: "vval", value: value === undefined ? "" : valueText(value), "aria-label": "Value " + n + ": value", disabled: disabled(), autocomplete: "off" })]),
      el("td", {}, canWrite ? [el("button", { type: "button", class: "link", "data-editor-action": "remove-value", "aria-label": "Remove value " + n, text: "Remove" })] : []),
    );
    return tr;
  }

  function readValues() {
    const values = {};
    const problems = [];
    for (const tr of $$("#value-rows tr[data-value-row]")) {
      const key = $("input.vkey", tr).value.trim();
      const type = $("select.vtype", tr).value;
      const text = $("input.vval", tr).value;
      if (!key) {
        if (text.trim()) problems.push({ path: "values", message: "a value needs what it is served with (a variant, on or off)" });
        continue;
      }
      const at = "values." + key;
      if (type === "string") values[key] = text;
      else if (type === "number") {
        const n = Number(text.trim());
        if (text.trim() === "" || !Number.isFinite(n)) problems.push({ path: at, message: "not a number: " + JSON.stringify(text) });
        else values[key] = n;
      } else if (type === "boolean") {
        const t = text.trim().toLowerCase();
        if (t !== "true" && t !== "false") problems.push({ path: at, message: "must be true or false" });
        else values[key] = t === "true";
      } else {
        try {
          values[key] = JSON.parse(text);
        } catch (e) {
          problems.push({ path: at, message: "not valid JSON: " + e.message });
        }
      }
    }
    return { values: values, problems: problems };
  }

  // ---- the whole document

  function same(a, b) {
    return JSON.stringify(a === undefined ? null : a) === JSON.stringify(b === undefined ? null : b);
  }

  function buildDocument(base) {
    const doc = asObject(base);
    const problems = [];
    const targeting = [];
    $$("#rule-rows > li[data-rule-row]").forEach(function (li, i) {
      const got = readRule(li, i);
      problems.push(...got.problems);
      targeting.push(got.rule);
    });
    if (targeting.length) doc.targeting = targeting;
    else delete doc.targeting;
    const def = readServe($("#default-serve-box [data-serve]"));
    if (def.problem) problems.push({ path: "default", message: def.problem });
    else if (def.none) delete doc.default;
    else doc.default = def.serve;
    const vals = readValues();
    problems.push(...vals.problems);
    if (Object.keys(vals.values).length) doc.values = vals.values;
    else delete doc.values;
    return { document: doc, problems: problems };
  }

  function markProblems(problems) {
    $$("#rules-editor [aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
    for (const p of problems) {
      const m = /^targeting\[(\d+)\]/.exec(p.path || "");
      if (m) {
        const li = $$("#rule-rows > li[data-rule-row]")[Number(m[1])];
        if (li) li.setAttribute("aria-invalid", "true");
      }
    }
  }

  // The document to edit: the one the builder was rendered from, or the flag as it is now
  // when what changed meanwhile (a percentage, a user) is none of the builder's keys.
  async function baseDocument(box) {
    const version = builder.dataset.version;
    const cur = await call("GET", flagUrl(flagData.name));
    if (!cur.ok || String(cur.data.version) === version) return { document: flagData.document, version: version };
    const was = asObject(flagData.document);
    const now = asObject(cur.data.document);
    if (["targeting", "default", "values"].every((k) => same(was[k], now[k]))) {
      return { document: cur.data.document, version: String(cur.data.version) };
    }
    show(box, "error", "Not saved: someone else changed the rules or values meanwhile (the flag is now at version " + cur.data.version + "). Nothing was overwritten; reload the page to edit the current rules.");
    box.focus();
    return null;
  }

  async function checkOrSave(save) {
    const box = $("#rules-msg");
    const base = save ? await baseDocument(box) : { document: flagData.document, version: builder.dataset.version };
    if (base === null) return;
    const built = buildDocument(base.document);
    if (built.problems.length) {
      markProblems(built.problems);
      show(box, "error", (save ? "Not saved: " : "") + "fix these first.", built.problems);
      box.focus();
      return;
    }
    const check = await call("POST", api + "/validate", { name: flagData.name, document: built.document });
    if (!check.ok || !check.data.ok) {
      const problems = check.data.problems || [];
      markProblems(problems);
      show(box, "error", (save ? "Not saved: " : "") + (check.ok ? "the flag would be invalid." : errorText(check)), problems);
      box.focus();
      return;
    }
    markProblems([]);
    if (!save) {
      show(box, "ok", "Valid. Nothing is saved until you press Save.");
      return;
    }
    const body = { document: built.document };
    const comment = $("#rules-comment").value.trim();
    if (comment) body.comment = comment;
    expectWrite(flagData.name, base.version);
    const res = await call("PUT", flagUrl(flagData.name), body, ifMatch(base.version));
    if (res.ok) {
      delete builder.dataset.dirty;
      show(box, "ok", res.data.changed === false ? "Nothing changed." : "Saved as version " + res.data.version + ".");
      builder.dataset.version = String(res.data.version);
      flagData.document = built.document;
      flagData.version = res.data.version;
    } else {
      show(box, "error", "Not saved: " + errorText(res), res.data.problems);
      markProblems(res.data.problems || []);
      box.focus();
    }
  }

  function renderBuilder() {
    if (!builder || !flagData || !editorData || flagData.document === null) return;
    const doc = asObject(flagData.document);
    const rows = $("#rule-rows");
    rows.textContent = "";
    for (const rule of Array.isArray(doc.targeting) ? doc.targeting : []) rows.append(ruleRow(rule));
    serveBox($("#default-serve-box [data-serve]"), "builder-default", doc.default, true);
    const vrows = $("#value-rows");
    vrows.textContent = "";
    if (doc.values && typeof doc.values === "object") for (const [k, v] of Object.entries(doc.values)) vrows.append(valueRow(k, v));
  }

  // ------------------------------------------------------------------ segment editor

  const segForm = $("#segment-editor");
  const segData = $("#segment-editor-data") ? JSON.parse($("#segment-editor-data").textContent) : null;
  const SEGMENT_FIELDS = ["description", "owner", "tags", "users", "groups", "exclude_users", "percentage", "holdout", "rules"];

  function renderSegment() {
    if (!segForm || !segData) return;
    const doc = segData.document && typeof segData.document === "object" ? segData.document : {};
    const f = segForm.elements;
    for (const k of ["description", "owner"]) f[k].value = doc[k] || "";
    for (const k of ["tags", "users", "groups", "exclude_users"]) f[k].value = listOf(doc[k]).join(", ");
    f.percentage.value = doc.percentage === undefined ? "" : String(doc.percentage);
    f.holdout.checked = doc.holdout === true;
    for (const input of $$("input", segForm)) if (!canWrite) input.disabled = true;
    const ol = $("#seg-rules");
    ol.textContent = "";
    for (const rule of listOf(doc.rules)) ol.append(conditionRow("seg", rule));
  }

  function buildSegment() {
    const doc = {};
    const original = segData.document && typeof segData.document === "object" ? segData.document : {};
    for (const [k, v] of Object.entries(original)) if (!SEGMENT_FIELDS.includes(k)) doc[k] = v; // salt, bucket_by
    const f = segForm.elements;
    const problems = [];
    for (const k of ["description", "owner"]) if (f[k].value.trim()) doc[k] = f[k].value.trim();
    for (const k of ["tags", "users", "groups", "exclude_users"]) {
      const items = words(f[k].value);
      if (items.length) doc[k] = items;
    }
    const pct = f.percentage.value.trim();
    if (pct !== "") {
      const n = Number(pct);
      if (!Number.isFinite(n)) problems.push({ path: "percentage", message: "must be a number from 0 to 100" });
      else doc.percentage = n;
    }
    if (f.holdout.checked) doc.holdout = true;
    const rules = [];
    $$("#seg-rules li[data-condition]").forEach(function (li, i) {
      const got = readCondition(li);
      if (got.problem) problems.push({ path: "rules[" + i + "]", message: got.problem });
      else rules.push(got.clause);
    });
    if (rules.length) doc.rules = rules;
    return { document: doc, problems: problems };
  }

  async function checkOrSaveSegment(save) {
    const box = $("#segment-editor-msg");
    const built = buildSegment();
    if (built.problems.length) {
      show(box, "error", (save ? "Not saved: " : "") + "fix these first.", built.problems);
      box.focus();
      return;
    }
    const check = await call("POST", api + "/validate", { name: "segment:" + segData.name, document: built.document });
    if (!check.ok || !check.data.ok) {
      show(box, "error", (save ? "Not saved: " : "") + (check.ok ? "the segment would be invalid." : errorText(check)), check.data.problems || []);
      box.focus();
      return;
    }
    if (!save) {
      show(box, "ok", "Valid. Nothing is saved until you press Save.");
      return;
    }
    expectWrite("segment:" + segData.name, segForm.dataset.version);
    const res = await call("PUT", api + "/segments/" + encodeURIComponent(segData.name), { document: built.document }, ifMatch(segForm.dataset.version));
    if (res.ok) {
      show(box, "ok", res.data.changed === false ? "Nothing changed." : "Saved as version " + res.data.version + ".");
      segForm.dataset.version = String(res.data.version);
      segData.document = built.document;
    } else {
      show(box, "error", "Not saved: " + errorText(res).replace("the flag", "the segment"), res.data.problems);
      box.focus();
    }
  }

  // ------------------------------------------------------------------ events

  const actions = {
    archive: lifecycle,
    restore: lifecycle,
    delete: lifecycle,
    "add-rule": function () {
      const li = ruleRow({ serve: "on" });
      $("#rule-rows").append(li);
      $("input.rname", li).focus();
    },
    "remove-rule": function (btn) {
      const li = btn.closest("li[data-rule-row]");
      const next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      const target = next ? $("input.rname", next) : $("[data-editor-action=add-rule]");
      if (target) target.focus();
    },
    "rule-up": function (btn) {
      const li = btn.closest("li[data-rule-row]");
      if (li.previousElementSibling) li.parentNode.insertBefore(li, li.previousElementSibling);
      btn.focus();
    },
    "rule-down": function (btn) {
      const li = btn.closest("li[data-rule-row]");
      if (li.nextElementSibling) li.parentNode.insertBefore(li.nextElementSibling, li);
      btn.focus();
    },
    "add-condition": function (btn) {
      const li = btn.closest("li[data-rule-row]");
      const row = conditionRow(li.id, { attribute: "", op: "eq", value: "" });
      $("ol.conditions", li).append(row);
      $("input", row).focus();
    },
    "remove-condition": function (btn) {
      const li = btn.closest("li[data-rule-row]");
      btn.closest("li[data-condition]").remove();
      const add = li ? $("[data-editor-action=add-condition]", li) : $("[data-editor-action=add-segment-rule]");
      if (add) add.focus();
    },
    "add-value": function () {
      const tr = valueRow("", undefined);
      $("#value-rows").append(tr);
      $("input", tr).focus();
    },
    "remove-value": function (btn) {
      btn.closest("tr").remove();
      const add = $("[data-editor-action=add-value]");
      if (add) add.focus();
    },
    "check-rules": function () {
      checkOrSave(false);
    },
    "add-segment-rule": function () {
      const row = conditionRow("seg", { attribute: "", op: "eq", value: "" });
      $("#seg-rules").append(row);
      $("input", row).focus();
    },
    "check-segment": function () {
      checkOrSaveSegment(false);
    },
  };

  document.addEventListener("click", function (ev) {
    const btn = ev.target.closest("[data-editor-action]");
    if (!btn || !(btn.dataset.editorAction in actions)) return;
    ev.preventDefault();
    actions[btn.dataset.editorAction](btn);
  });

  document.addEventListener("change", function (ev) {
    const kind = ev.target.closest("select[data-serve-kind]");
    if (kind) {
      const holder = kind.closest("[data-serve]");
      serveDetail($(".serve-detail", holder), kind.id.replace(/-serve$/, ""), kind.value, JSON.parse(holder.dataset.original || "null"));
    }
  });

  document.addEventListener("submit", function (ev) {
    const form = ev.target.closest("form[data-form]");
    if (!form) return;
    if (form.dataset.form === "create-flag") {
      ev.preventDefault();
      createFlag(form);
    } else if (form.dataset.form === "rules-editor") {
      ev.preventDefault();
      checkOrSave(true);
    } else if (form.dataset.form === "segment-editor") {
      ev.preventDefault();
      checkOrSaveSegment(true);
    } else if (form.dataset.form === "lifecycle") {
      ev.preventDefault(); // Enter in the comment box: nothing to submit (the buttons act)
    }
  });

  // The list past one page is filtered by the server: a changed filter reloads the page.
  document.addEventListener("change", function (ev) {
    const table = $("table.flags[data-paged]");
    if (table && ev.target.closest("#filters") && ev.target.tagName === "SELECT") $("#filters").submit();
  });

  renderBuilder();
  renderSegment();
})();
