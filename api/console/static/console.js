/* Flagstream console: the rule builder and live preview of one flag environment. Plain JS, no build. */
(function () {
  "use strict";
  var dataEl = document.getElementById("fs-data");
  if (!dataEl) return;
  var D = JSON.parse(dataEl.textContent);
  var S = D.config;
  var RW = D.canWrite;
  var root = document.getElementById("builder");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var meta = new WeakMap();
  var uid = 0;
  var users = [];
  var audience = 10000;
  var TYPES = {
    string: ["eq", "neq", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with", "matches", "exists", "not_exists"],
    number: ["eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte", "between", "exists", "not_exists"],
    date: ["before", "after", "between_dates", "exists", "not_exists"],
    semver: ["semver_eq", "semver_lt", "semver_gt", "exists", "not_exists"],
    list: ["contains_any", "contains_all", "exists", "not_exists"],
    boolean: ["eq", "neq", "exists", "not_exists"],
    segment: ["in_segment"]
  };
  var OP_LABEL = {eq: "is", neq: "is not", "in": "is one of", not_in: "is not one of", contains: "contains", not_contains: "does not contain",
    starts_with: "starts with", ends_with: "ends with", matches: "matches regex", exists: "is set", not_exists: "is not set",
    lt: "<", lte: "≤", gt: ">", gte: "≥", between: "between", before: "before", after: "after", between_dates: "between dates",
    semver_eq: "version =", semver_lt: "version <", semver_gt: "version >", contains_any: "contains any of", contains_all: "contains all of",
    in_segment: "is in segment"};
  var ARITY = {exists: 0, not_exists: 0, between: 2, between_dates: 2, lt: 1, lte: 1, gt: 1, gte: 1, before: 1, after: 1,
    semver_eq: 1, semver_lt: 1, semver_gt: 1};

  S.rules = S.rules || []; S.targets = S.targets || []; S.prerequisites = S.prerequisites || [];

  function h(tag, attrs) {
    var el = document.createElement(tag);
    for (var k in attrs || {}) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else if (k === "value") el.value = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      (Array.isArray(c) ? c : [c]).forEach(function (x) { el.appendChild(typeof x === "string" ? document.createTextNode(x) : x); });
    }
    return el;
  }
  function nid(p) { uid += 1; return "f" + uid + "-" + (p || "x").replace(/[^A-Za-z0-9]/g, "-"); }
  function field(label, input, path) {
    var id = input.id || (input.id = nid(path));
    if (path) input.setAttribute("data-path", path);
    if (!RW) input.disabled = true;
    return h("div", {"class": "fld"}, h("label", {"for": id, text: label}), input);
  }
  function btn(text, onclick, extra) {
    if (!RW) return null;
    var a = {type: "button", "class": "small", text: text, onclick: function (e) {
      var focus = onclick(e); rerender();
      if (focus) {
        var b = root.querySelector('[aria-label="' + focus + '"]');
        if (b && b.disabled) b = root.querySelector('[aria-label="' + focus.replace(/ (up|down)$/, function (m) { return m === " up" ? " down" : " up"; }) + '"]');
        if (b) b.focus();
      }
    }};
    for (var k in extra || {}) a[k] = extra[k];
    return h("button", a);
  }
  function variationSelect(value, onchange, path, allowNone) {
    var sel = h("select", {onchange: function () { onchange(sel.value || null); changed(); }});
    if (allowNone) sel.appendChild(h("option", {value: "", text: "(none)"}));
    D.variations.forEach(function (v) { sel.appendChild(h("option", {value: v, text: v, selected: v === value})); });
    sel.value = value || "";
    sel.setAttribute("data-path", path);
    return sel;
  }
  function toLocal(iso) { return iso ? iso.replace(/(\.\d+)?(Z|[+-]\d\d:\d\d)$/, "").slice(0, 19) : ""; }
  function fromLocal(v) { return v ? (v.length === 16 ? v + ":00" : v) + "Z" : null; }

  /* ---- conditions ---- */
  function typeOf(clause) {
    var m = meta.get(clause);
    if (m && m.type) return m.type;
    var t = "string";
    var v = (clause.values || [])[0];
    for (var k in TYPES) if (TYPES[k].indexOf(clause.op) >= 0 && ["eq", "neq", "in", "not_in", "exists", "not_exists"].indexOf(clause.op) < 0) { t = k; break; }
    if (t === "string" && typeof v === "number") t = "number";
    if (t === "string" && typeof v === "boolean") t = "boolean";
    meta.set(clause, {type: t});
    return t;
  }
  function inferType(attr) {
    for (var i = 0; i < users.length; i++) {
      var v = users[i][attr];
      if (v === undefined || v === null) continue;
      if (typeof v === "number") return "number";
      if (typeof v === "boolean") return "boolean";
      if (Array.isArray(v)) return "list";
      if (/^\d{4}-\d\d-\d\dT/.test(v)) return "date";
      if (/^\d+\.\d+\.\d+/.test(v)) return "semver";
      return "string";
    }
    return null;
  }
  function parseValues(text, type) {
    return text.split(",").map(function (s) { return s.trim(); }).filter(function (s) { return s !== ""; }).map(function (s) {
      if (type === "number") { var n = Number(s); return isNaN(n) ? s : n; }
      if (type === "boolean") return s === "true" ? true : s === "false" ? false : s;
      return s;
    });
  }
  function valuesEditor(clause, path, type) {
    var op = clause.op, arity = ARITY[op];
    if (arity === 0) return null;
    if (op === "in_segment") {
      var sel = h("select", {multiple: true, size: Math.min(4, Math.max(2, D.segments.length)), onchange: function () {
        clause.values = Array.prototype.filter.call(sel.options, function (o) { return o.selected; }).map(function (o) { return o.value; }); changed(); }});
      D.segments.forEach(function (s) { sel.appendChild(h("option", {value: s, text: s, selected: (clause.values || []).indexOf(s) >= 0})); });
      return field("Segments", sel, path + ".values");
    }
    if (type === "date") {
      var n = arity || 1, out = [];
      for (var i = 0; i < n; i++) (function (i) {
        var inp = h("input", {type: "datetime-local", step: 1, value: toLocal((clause.values || [])[i]), oninput: function () {
          var vals = (clause.values || []).slice(); vals[i] = fromLocal(inp.value); clause.values = vals.filter(Boolean); changed(); }});
        out.push(field(n > 1 ? (i ? "To (UTC)" : "From (UTC)") : "Date (UTC)", inp, path + ".values[" + i + "]"));
      })(i);
      return out;
    }
    if (op === "matches") {
      var err = h("p", {"class": "err", hidden: true, "aria-live": "polite"});
      var rx = h("input", {type: "text", value: (clause.values || [])[0] || "", "class": "values", oninput: function () {
        clause.values = rx.value ? [rx.value] : [];
        var problem = null;
        try { new RegExp(rx.value); } catch (e) { problem = "Not a valid regular expression: " + e.message; }
        err.hidden = !problem; err.textContent = problem || ""; err.id = err.id || nid("rx-err");
        if (problem) { rx.setAttribute("aria-invalid", "true"); rx.setAttribute("aria-describedby", err.id); }
        else { rx.removeAttribute("aria-invalid"); rx.removeAttribute("aria-describedby"); }
        changed();
      }});
      return [field("Regular expression", rx, path + ".values"), err];
    }
    var inp2 = h("input", {type: "text", "class": "values", value: (clause.values || []).join(", "), oninput: function () {
      clause.values = parseValues(inp2.value, type); changed(); }});
    var label = arity === 1 ? "Value" : arity === 2 ? "Two values (comma-separated)" : "Values (comma-separated)";
    return field(label, inp2, path + ".values");
  }
  function clauseEditor(clause, path, remove) {
    var type = typeOf(clause);
    var attr = h("input", {type: "text", list: "fs-attrs", value: clause.attribute || "", autocomplete: "off", onchange: function () {
      clause.attribute = attr.value.trim();
      var t = inferType(clause.attribute);
      if (t && !(meta.get(clause) || {}).manual) { meta.set(clause, {type: t}); if (TYPES[t].indexOf(clause.op) < 0) { clause.op = TYPES[t][0]; clause.values = []; } rerender(); }
      else changed();
    }});
    var typeSel = h("select", {onchange: function () {
      meta.set(clause, {type: typeSel.value, manual: true});
      if (TYPES[typeSel.value].indexOf(clause.op) < 0) { clause.op = TYPES[typeSel.value][0]; clause.values = []; }
      rerender();
    }});
    Object.keys(TYPES).forEach(function (t) { typeSel.appendChild(h("option", {value: t, text: t, selected: t === type})); });
    var opSel = h("select", {onchange: function () { clause.op = opSel.value; var a = ARITY[clause.op]; if (a === 0) clause.values = []; rerender(); }});
    var ops = TYPES[type].slice(); if (ops.indexOf(clause.op) < 0) ops.unshift(clause.op);
    ops.forEach(function (o) { opSel.appendChild(h("option", {value: o, text: OP_LABEL[o] || o, selected: o === clause.op})); });
    return h("div", {"class": "clause", "data-path": path},
      field("Attribute", attr, path + ".attribute"), field("Type", typeSel), field("Operator", opSel, path + ".op"),
      valuesEditor(clause, path, type), btn("Remove condition", remove, {"aria-label": "Remove condition on " + (clause.attribute || "attribute")}));
  }
  function newClause() { return {attribute: "", op: "eq", values: []}; }
  function condEditor(cond, path, replace) {
    if (cond.all || cond.any) {
      var kind = cond.all ? "all" : "any", items = cond[kind];
      var kindSel = h("select", {onchange: function () { var o = {}; o[kindSel.value] = items; replace(o); rerender(); }},
        h("option", {value: "all", text: "Match ALL of (AND)", selected: kind === "all"}),
        h("option", {value: "any", text: "Match ANY of (OR)", selected: kind === "any"}));
      kindSel.id = nid(path); if (!RW) kindSel.disabled = true;
      var children = items.map(function (c, j) {
        return condEditor(c, path + "." + kind + "[" + j + "]", function (n) {
          if (n === null) { items.splice(j, 1); if (!items.length) replace(null); } else items[j] = n;
        });
      });
      return h("fieldset", {"class": "group", "data-path": path},
        h("legend", null, h("label", {"for": kindSel.id, "class": "inline-label", text: "Group: "}), kindSel),
        children,
        h("div", {"class": "actions"}, btn("Add condition", function () { items.push(newClause()); }),
          btn("Add group", function () { items.push({any: [newClause()]}); }),
          btn("Negate group (NOT)", function () { replace({not: cond}); }),
          btn("Remove group", function () { replace(null); })));
    }
    if (cond.not) {
      return h("fieldset", {"class": "group not", "data-path": path}, h("legend", {text: "NOT (none of this may match)"}),
        condEditor(cond.not, path + ".not", function (n) { if (n === null) replace(null); else cond.not = n; }),
        h("div", {"class": "actions"}, btn("Remove NOT", function () { replace(cond.not); })));
    }
    return h("div", null, clauseEditor(cond, path, function () { replace(null); }),
      h("div", {"class": "actions"}, btn("Group with AND", function () { replace({all: [cond, newClause()]}); }),
        btn("Group with OR", function () { replace({any: [cond, newClause()]}); }), btn("Negate (NOT)", function () { replace({not: cond}); })));
  }

  /* ---- serve / rollout ---- */
  function serveEditor(serve, path, set) {
    var mode = serve && serve.rollout ? "rollout" : "variation";
    var modeSel = h("select", {onchange: function () {
      if (modeSel.value === "rollout") {
        var n = D.variations.length, w = Math.floor(100000 / n);
        set({rollout: D.variations.map(function (v, i) { return {variation: v, weight: i === 0 ? 100000 - w * (n - 1) : w}; })});
      } else set({variation: D.variations[0]});
      rerender();
    }}, h("option", {value: "variation", text: "One variation", selected: mode === "variation"}),
        h("option", {value: "rollout", text: "Percentage rollout", selected: mode === "rollout"}));
    var parts = [field("Serve", modeSel)];
    if (!serve) return h("div", {"class": "row", "data-path": path}, parts);
    if (mode === "variation") {
      parts.push(field("Variation", variationSelect(serve.variation, function (v) { serve.variation = v; }, path + ".variation")));
      return h("div", {"class": "row", "data-path": path}, parts);
    }
    var total = serve.rollout.reduce(function (a, w) { return a + w.weight; }, 0) || 1;
    var sumEl = h("p", {"class": "hint", "aria-live": "polite"});
    function summary() {
      var t = serve.rollout.reduce(function (a, w) { return a + w.weight; }, 0);
      sumEl.textContent = "Total " + (t / 1000).toFixed(1) + " % (weights are relative) · of about " + audience + " users: " +
        serve.rollout.map(function (w) { return w.variation + " ≈ " + Math.round(audience * w.weight / (t || 1)); }).join(", ");
    }
    D.variations.forEach(function (v) {
      var entry = serve.rollout.filter(function (w) { return w.variation === v; })[0];
      var i = serve.rollout.indexOf(entry);
      var inp = h("input", {type: "number", min: 0, max: 100, step: 0.1, value: entry ? (entry.weight / 1000) : 0, oninput: function () {
        var pct = Math.max(0, Math.min(100, Number(inp.value) || 0));
        if (!entry) { entry = {variation: v, weight: 0}; serve.rollout.push(entry); }
        entry.weight = Math.round(pct * 1000); summary(); changed();
      }});
      parts.push(h("div", {"class": "rollout-row"}, field(v + " %", inp, path + ".rollout[" + (i < 0 ? serve.rollout.length : i) + "].weight")));
    });
    summary();
    void total;
    return h("div", {"class": "rollout", "data-path": path + ".rollout"}, h("div", {"class": "row"}, parts), sumEl);
  }

  /* ---- rules ---- */
  var dragFrom = null;
  function moveRule(i, j, focusLabel) {
    if (j < 0 || j >= S.rules.length) return null;
    var r = S.rules.splice(i, 1)[0]; S.rules.splice(j, 0, r);
    return focusLabel;
  }
  function ruleEditor(rule, i) {
    var path = "rules[" + i + "]";
    var idIn = h("input", {type: "text", value: rule.id, oninput: function () { rule.id = idIn.value; changed(); }});
    var desc = h("input", {type: "text", value: rule.description || "", oninput: function () { rule.description = desc.value || undefined; changed(); }});
    var upLabel = "Move rule " + rule.id + " up", downLabel = "Move rule " + rule.id + " down";
    var li = h("li", {"class": "rule", "data-path": path},
      h("div", {"class": "rule-head"},
        RW ? h("span", {"class": "handle", draggable: "true", title: "Drag to reorder", "aria-hidden": "true", text: "⠿"}) : null,
        h("h3", {text: "Rule " + (i + 1)}),
        btn("↑", function () { return moveRule(i, i - 1, upLabel); }, {"aria-label": upLabel, disabled: i === 0}),
        btn("↓", function () { return moveRule(i, i + 1, downLabel); }, {"aria-label": downLabel, disabled: i === S.rules.length - 1}),
        btn("Remove rule", function () { S.rules.splice(i, 1); }, {"aria-label": "Remove rule " + rule.id})),
      h("div", {"class": "row"}, field("Rule id", idIn, path + ".id"), field("Description", desc, path + ".description")),
      rule.when ? condEditor(rule.when, path + ".when", function (n) { rule.when = n; })
        : h("div", {"class": "actions"}, h("span", {"class": "hint", text: "Matches everyone. "}),
            btn("Add condition", function () { rule.when = {all: [newClause()]}; })),
      serveEditor(rule.serve, path + ".serve", function (s) { rule.serve = s; }));
    if (RW) {
      li.addEventListener("dragstart", function (e) { dragFrom = i; li.classList.add("dragging"); e.dataTransfer.effectAllowed = "move"; e.dataTransfer.setData("text/plain", String(i)); });
      li.addEventListener("dragend", function () { li.classList.remove("dragging"); });
      li.addEventListener("dragover", function (e) { e.preventDefault(); });
      li.addEventListener("drop", function (e) { e.preventDefault(); if (dragFrom !== null && dragFrom !== i) { moveRule(dragFrom, i, null); rerender(); } dragFrom = null; });
      // only the handle starts a drag: a draggable <li> would turn selecting text in its inputs into a drag
    }
    return li;
  }
  function nextRuleId() { var n = S.rules.length + 1; while (S.rules.some(function (r) { return r.id === "rule-" + n; })) n++; return "rule-" + n; }

  /* ---- targets, prerequisites, schedule ---- */
  function targetsEditor() {
    return D.variations.map(function (v) {
      var t = S.targets.filter(function (x) { return x.variation === v; })[0];
      var i = S.targets.indexOf(t);
      var ta = h("textarea", {rows: 2, value: t ? t.values.join("\n") : "", oninput: function () {
        var vals = ta.value.split(/[\n,]/).map(function (s) { return s.trim(); }).filter(Boolean);
        if (!t) { t = {variation: v, values: []}; S.targets.push(t); }
        t.values = vals; changed(); }});
      return field("Users always served " + v + " (one key per line)", ta, "targets[" + (i < 0 ? S.targets.length : i) + "].values");
    });
  }
  function prerequisitesEditor() {
    return S.prerequisites.map(function (p, i) {
      var f = h("input", {type: "text", value: p.flag, oninput: function () { p.flag = f.value.trim(); changed(); }});
      var v = h("input", {type: "text", value: p.variation, oninput: function () { p.variation = v.value.trim(); changed(); }});
      return h("div", {"class": "row"}, field("Flag", f, "prerequisites[" + i + "].flag"), field("must serve", v, "prerequisites[" + i + "].variation"),
        btn("Remove prerequisite", function () { S.prerequisites.splice(i, 1); }));
    });
  }
  function dateField(label, get, set, path) {
    var inp = h("input", {type: "datetime-local", step: 1, value: toLocal(get()), oninput: function () { set(fromLocal(inp.value)); changed(); }});
    return field(label, inp, path);
  }
  function scheduleEditor() {
    var sc = S.schedule || {};
    function put(k, v) { sc[k] = v || undefined; S.schedule = (sc.enable_at || sc.disable_at) ? sc : undefined; }
    return h("div", {"class": "row"},
      dateField("Turn on at (UTC)", function () { return sc.enable_at; }, function (v) { put("enable_at", v); }, "schedule.enable_at"),
      dateField("Turn off at (UTC)", function () { return sc.disable_at; }, function (v) { put("disable_at", v); }, "schedule.disable_at"),
      dateField("Expires at (UTC)", function () { return S.expires_at; }, function (v) { S.expires_at = v || undefined; }, "expires_at"));
  }

  function render() {
    uid = 0;
    var attrs = h("datalist", {id: "fs-attrs"});
    var names = D.attributes.slice();
    users.forEach(function (u) { Object.keys(u).forEach(function (k) { if (names.indexOf(k) < 0) names.push(k); }); });
    names.forEach(function (a) { attrs.appendChild(h("option", {value: a})); });
    var off = variationSelect(S.off_variation, function (v) { S.off_variation = v || undefined; }, "off_variation", true);
    var aud = h("input", {type: "number", min: 1, value: audience, onchange: function () { audience = Math.max(1, Number(aud.value) || 1); rerender(); }});
    var on = h("input", {type: "checkbox", disabled: !RW, "data-path": "enabled", checked: !!S.enabled, onchange: function () { S.enabled = on.checked; changed(); }});
    var frag = h("div", null, attrs,
      h("div", {"class": "check"}, on, h("label", {"for": on.id = "cfg-enabled", "class": "inline-label", text: " Targeting on (serves the rules below once saved)"})),
      h("h3", {text: "When off"}), field("Variation served when off", off, "off_variation"),
      h("h3", {text: "Individual targets"}), targetsEditor(),
      h("h3", {text: "Rules (first match wins)"}),
      h("ol", {"class": "rules", "data-path": "rules"}, S.rules.map(ruleEditor)),
      h("div", {"class": "actions"}, btn("Add rule", function () { S.rules.push({id: nextRuleId(), when: {all: [newClause()]}, serve: {variation: D.variations[0]}}); })),
      h("h3", {text: "Everyone else (default)"}),
      S.default ? serveEditor(S.default, "default", function (s) { S.default = s; })
        : h("div", {"data-path": "default", "class": "actions"}, h("span", {"class": "hint", text: "No default serve. "}), btn("Add a default", function () { S.default = {variation: D.variations[0]}; })),
      field("Estimated audience for rollouts (users)", aud),
      h("h3", {text: "Prerequisites"}), prerequisitesEditor(),
      h("div", {"class": "actions"}, btn("Add prerequisite", function () { S.prerequisites.push({flag: "", variation: ""}); })),
      h("h3", {text: "Schedule and expiry"}), scheduleEditor());
    root.replaceChildren(frag);
  }
  function rerender() { render(); changed(); }

  /* ---- validation messages at their field ---- */
  function showIssues(issues, box) {
    root.querySelectorAll(".err[data-gen]").forEach(function (e) { e.remove(); });
    root.querySelectorAll("[data-gen-invalid]").forEach(function (e) { e.removeAttribute("aria-invalid"); e.removeAttribute("data-gen-invalid"); e.removeAttribute("aria-describedby"); });
    var unplaced = [];
    (issues || []).forEach(function (is, n) {
      var p = is.path, el = null;
      while (p && !(el = root.querySelector('[data-path="' + p.replace(/"/g, "") + '"]'))) p = p.replace(/(\.[^.\[]+|\[\d+\])$/, "") === p ? "" : p.replace(/(\.[^.\[]+|\[\d+\])$/, "");
      if (!el) { unplaced.push(is); return; }
      var msg = h("p", {"class": "err", "data-gen": "1", id: "issue-" + n, text: is.message});
      if (/^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName)) {
        el.setAttribute("aria-invalid", "true"); el.setAttribute("data-gen-invalid", "1"); el.setAttribute("aria-describedby", msg.id);
        el.parentNode.appendChild(msg);
      } else el.insertBefore(msg, el.firstChild);
    });
    if (box) box.replaceChildren(unplaced.length ? h("div", {"class": "alert", role: "alert"}, h("ul", null, unplaced.map(function (i) { return h("li", null, h("code", {text: i.path}), ": " + i.message); }))) : "");
    return (issues || []).length;
  }

  /* ---- preview ---- */
  function parseUsers(text) {
    text = text.trim();
    if (!text) return [];
    if (text[0] === "[" || text[0] === "{") {
      var v = JSON.parse(text);
      v = Array.isArray(v) ? v : [v];
      if (!v.every(function (x) { return x && typeof x === "object" && !Array.isArray(x); })) throw new Error("each user must be a JSON object");
      return v;
    }
    var rows = parseCsv(text);
    var head = rows.shift().map(function (s) { return s.trim(); });
    return rows.map(function (cells) {
      var o = {};
      head.forEach(function (k, i) {
        var c = cells[i] === undefined ? "" : cells[i], quoted = c instanceof String; c = String(c);
        if (!quoted) c = c.trim();
        o[k] = quoted ? c : c === "true" ? true : c === "false" ? false : c !== "" && !isNaN(Number(c)) && k !== "targetingKey" && k !== "key" ? Number(c) : c;
      });
      if (o.targetingKey === undefined && o.key !== undefined) o.targetingKey = String(o.key);
      return o;
    });
  }
  // CSV rows (RFC 4180): cells may be "quoted", with commas, line breaks and "" inside; a quoted cell
  // comes back as a String object so that it stays text ("007" is not the number 7). Blank lines skipped.
  function parseCsv(text) {
    var rows = [], row = [], cell = "", quoted = false, wasQuoted = false, i = 0, n = text.length;
    function endCell() { row.push(wasQuoted ? new String(cell) : cell); cell = ""; wasQuoted = false; }
    function endRow() { endCell(); if (row.length > 1 || String(row[0]).trim() !== "" || row[0] instanceof String) rows.push(row); row = []; }
    for (; i < n; i++) {
      var ch = text[i];
      if (quoted) {
        if (ch === '"') { if (text[i + 1] === '"') { cell += '"'; i++; } else quoted = false; }
        else cell += ch;
      } else if (ch === '"' && cell.trim() === "") { quoted = true; wasQuoted = true; cell = ""; }
      else if (ch === ",") endCell();
      else if (ch === "\n" || ch === "\r") { if (ch === "\r" && text[i + 1] === "\n") i++; endRow(); }
      else cell += ch;
    }
    if (quoted) throw new Error("a quoted CSV cell is not closed");
    if (cell !== "" || row.length) endRow();
    if (!rows.length) throw new Error("the CSV has no header row");
    return rows;
  }
  var usersBox = document.getElementById("users"), usersErr = document.getElementById("users-error");
  function readUsers() {
    try { users = parseUsers(usersBox.value); usersErr.hidden = true; usersBox.removeAttribute("aria-invalid"); }
    catch (e) { usersErr.hidden = false; usersErr.textContent = "Cannot read the users: " + e.message; usersBox.setAttribute("aria-invalid", "true"); }
  }
  usersBox.addEventListener("input", function () { readUsers(); changed(); });
  document.getElementById("users-file").addEventListener("change", function (e) {
    var f = e.target.files[0]; if (!f) return;
    f.text().then(function (t) { usersBox.value = t; readUsers(); rerender(); });
  });
  function clean() {
    var c = JSON.parse(JSON.stringify(S));
    c.targets = (c.targets || []).filter(function (t) { return t.values && t.values.length; });
    if (!c.default) delete c["default"];
    if (!c.off_variation) delete c.off_variation;
    return c;
  }
  function post(url, body) {
    return fetch(url, {method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body)});
  }
  var timer = null, seq = 0;
  var statusEl = document.getElementById("status");
  function changed() { clearTimeout(timer); timer = setTimeout(preview, 250); }
  function preview() {
    var mine = ++seq;
    post(D.urls.preview, {config: clean(), contexts: users}).then(function (r) { return r.json(); }).then(function (a) {
      if (mine !== seq) return;
      showIssues(a.issues, statusEl);
      var warn = document.getElementById("warnings");
      warn.replaceChildren.apply(warn, (a.warnings || []).length ? [h("h3", {text: "Warnings (complexity " + a.complexity + ")"}),
        h("ul", {"class": "warnings"}, a.warnings.map(function (w) { return h("li", null, h("code", {text: w.path}), ": " + w.message); }))] : []);
      var tbody = document.querySelector("#preview-table tbody");
      tbody.replaceChildren.apply(tbody, (a.results || []).map(function (r) {
        return h("tr", null, h("td", {"class": "mono", text: r.key}), h("td", {text: r.variation === null ? "—" : r.variation}),
          h("td", {text: r.reason + (r.error_code ? " (" + r.error_code + ")" : "")}), h("td", {"class": "mono", text: r.rule_id || "—"}));
      }));
      var counts = a.counts || {}, keys = Object.keys(counts);
      document.getElementById("preview-counts").textContent = keys.length ? (a.results.length + " users: " + keys.map(function (k) { return k + " " + counts[k]; }).join(", ")) : "";
      document.getElementById("preview-table").setAttribute("data-seq", String(mine));
    });
  }
  var saveBtn = document.getElementById("save");
  if (saveBtn) saveBtn.addEventListener("click", function () {
    var reason = document.getElementById("save-reason").value;
    statusEl.textContent = "Saving…";
    post(D.urls.save, {config: clean(), expected_version: D.version, reason: reason || null}).then(function (r) {
      return r.json().then(function (a) { return {status: r.status, a: a}; });
    }).then(function (x) {
      if (x.status === 200) {
        D.version = x.a.version; document.getElementById("flag-version").textContent = String(D.version);
        statusEl.replaceChildren(h("p", {"class": "ok", text: "Saved: version " + D.version + "."})); showIssues([]);
      } else if (x.status === 409 && x.a.conflict) {
        var c = x.a.conflict;
        statusEl.replaceChildren(h("div", {"class": "conflict", role: "alert"},
          h("p", null, h("strong", {text: "Changed by " + c.by.join(", ") + " meanwhile"}), " (now version " + c.version + "). Your edit was not saved; review the newer version:"),
          h("ul", null, c.changes.map(function (ch) {
            return h("li", null, "v" + ch.version + " " + ch.type + " by " + ch.actor + (ch.reason ? " — " + ch.reason : "") + ": " +
              ch.diff.slice(0, 8).map(function (d) { return d.path + " → " + JSON.stringify(d.after); }).join("; "));
          })),
          h("a", {href: location.pathname, text: "Load the newer version (your unsaved edit is discarded)"})));
      } else if (x.a.issues && x.a.issues.length) {
        var n = showIssues(x.a.issues, statusEl);
        statusEl.insertBefore(h("p", {"class": "err", role: "alert", text: "Not saved: " + n + " problem(s) shown at their fields."}), statusEl.firstChild);
      } else {
        statusEl.replaceChildren(h("p", {"class": "err", role: "alert", text: "Not saved: " + (x.a.message || x.status)}));
      }
    });
  });
  render();
  preview();
})();
