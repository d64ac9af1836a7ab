// The segment rule builder: AND/OR groups of conditions, written to the form's `rules` as the
// JSON the API takes, with a live count and sample of the contacts who match.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("rule-builder");
  if (!root) return;
  const { el } = window.chatman;
  const fields = JSON.parse(root.dataset.fields);
  const operators = JSON.parse(root.dataset.operators);
  const hidden = root.closest("form").querySelector('input[name="rules"]');
  const count = document.getElementById("rule-count");
  const problem = document.getElementById("rule-error");
  const sample = document.getElementById("rule-sample");
  const LABELS = {
    eq: "is", neq: "is not", contains: "contains", not_contains: "does not contain", starts_with: "starts with",
    ends_with: "ends with", exists: "is set", not_exists: "is not set", gt: "is more than", gte: "is at least",
    lt: "is less than", lte: "is at most", in: "is one of", not_in: "is none of", before: "is before",
    after: "is after", within_last_days: "within the last N days",
  };
  const firstField = Object.keys(fields)[0];
  const blank = () => ({ field: firstField, op: "eq", value: "" });
  let state = JSON.parse(hidden.value || "null");
  if (!state || !(state.all || state.any)) state = { all: [blank()] };

  const opsFor = (field) => Object.keys(operators).filter((op) => operators[op].includes(fields[field]));

  // A typed value, as the rules want it: numbers as numbers, booleans as booleans, lists split.
  const typed = (cond, raw) => {
    const type = fields[cond.field];
    if (cond.op === "within_last_days") return raw === "" ? "" : Number(raw);
    if (cond.op === "in" || cond.op === "not_in") {
      const items = String(raw).split(",").map((s) => s.trim()).filter(Boolean);
      return type === "number" ? items.map(Number) : items;
    }
    if (type === "number") return raw === "" ? "" : Number(raw);
    if (type === "boolean") return raw === "true";
    return raw;
  };

  const valueInput = (cond) => {
    if (cond.op === "exists" || cond.op === "not_exists") return null;
    const type = fields[cond.field];
    const set = (event) => { cond.value = typed(cond, event.target.value); changed(); };
    if (type === "boolean" && !["in", "not_in"].includes(cond.op)) {
      if (typeof cond.value !== "boolean") cond.value = true;
      return el("select", { "aria-label": "Value", onchange: set },
        el("option", { value: "true", selected: cond.value === true }, "yes"),
        el("option", { value: "false", selected: cond.value === false }, "no"));
    }
    const kind = cond.op === "within_last_days" || (type === "number" && !["in", "not_in"].includes(cond.op)) ? "number"
      : type === "date" && !["in", "not_in"].includes(cond.op) ? "date" : "text";
    const shown = Array.isArray(cond.value) ? cond.value.join(", ") : cond.value;
    return el("input", { type: kind, "aria-label": "Value", value: shown ?? "", oninput: set,
      placeholder: ["in", "not_in"].includes(cond.op) ? "a, b, c" : "" });
  };

  const conditionRow = (cond, siblings) => {
    const fieldSelect = el("select", { "aria-label": "Field", onchange: (e) => {
      cond.field = e.target.value;
      if (!opsFor(cond.field).includes(cond.op)) cond.op = opsFor(cond.field)[0];
      cond.value = fields[cond.field] === "boolean" ? true : "";
      render();
    } }, Object.keys(fields).map((f) => el("option", { value: f, selected: f === cond.field }, f.replace("attributes.", ""))));
    const opSelect = el("select", { "aria-label": "Operator", onchange: (e) => {
      cond.op = e.target.value;
      if (cond.op === "exists" || cond.op === "not_exists") delete cond.value;
      else if (cond.value === undefined) cond.value = "";
      render();
    } }, opsFor(cond.field).map((op) => el("option", { value: op, selected: op === cond.op }, LABELS[op] || op)));
    const remove = el("button", { type: "button", class: "link", onclick: () => {
      siblings.splice(siblings.indexOf(cond), 1);
      render();
    } }, "remove");
    return el("div", { class: "cond" }, fieldSelect, opSelect, valueInput(cond), remove);
  };

  const groupBox = (group, parentList) => {
    const key = group.all ? "all" : "any";
    const items = group[key];
    const mode = el("select", { "aria-label": "Match", onchange: (e) => {
      group[e.target.value] = items;
      delete group[key];
      render();
    } }, el("option", { value: "all", selected: key === "all" }, "all of these (AND)"),
      el("option", { value: "any", selected: key === "any" }, "any of these (OR)"));
    const body = items.map((item) => (item.all || item.any ? groupBox(item, items) : conditionRow(item, items)));
    const buttons = el("div", { class: "actions" },
      el("button", { type: "button", class: "secondary", onclick: () => { items.push(blank()); render(); } }, "+ Condition"),
      el("button", { type: "button", class: "secondary", onclick: () => { items.push({ any: [blank()] }); render(); } }, "+ Group"),
      parentList ? el("button", { type: "button", class: "link", onclick: () => {
        parentList.splice(parentList.indexOf(group), 1);
        render();
      } }, "remove group") : null);
    return el("div", { class: "group" }, el("div", {}, "Match ", mode), body, buttons);
  };

  // Empty groups and unfinished values are left out of what is saved and counted.
  const clean = (node) => {
    if (node.all || node.any) {
      const key = node.all ? "all" : "any";
      const items = node[key].map(clean).filter(Boolean);
      return items.length ? { [key]: items } : null;
    }
    if ("value" in node && (node.value === "" || (Array.isArray(node.value) && !node.value.length))) return null;
    return node;
  };

  let timer = null;
  let asked = 0;
  const refresh = async () => {
    const rules = clean(state);
    hidden.value = JSON.stringify(rules);
    if (!rules) {
      count.textContent = "–";
      sample.replaceChildren();
      return;
    }
    const mine = ++asked;
    try {
      const answer = await window.chatman.postJSON(root.dataset.preview, { rules });
      if (mine !== asked) return;
      problem.textContent = "";
      count.textContent = answer.count;
      sample.replaceChildren(...answer.sample.map((c) => el("li", {}, `${c.name || "(no name)"} ${c.phone}`)));
    } catch (error) {
      if (mine !== asked) return;
      count.textContent = "–";
      problem.textContent = error.message;
    }
  };
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  };
  const render = () => {
    root.replaceChildren(groupBox(state, null));
    changed();
  };
  render();
});
