// Template editor: a source for each {{placeholder}} of the body, and a live preview.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("template-form");
  if (!form) return;
  const { el } = window.chatman;
  const sources = JSON.parse(form.dataset.sources);
  const contactFields = JSON.parse(form.dataset.fields);
  const known = JSON.parse(form.dataset.variables || "{}");
  const body = form.querySelector('textarea[name="body"]');
  const box = document.getElementById("template-variables");
  const preview = document.getElementById("template-preview");
  const previewFor = document.getElementById("template-preview-for");
  const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;

  const names = () => [...new Set([...body.value.matchAll(PLACEHOLDER)].map((m) => m[1]))];
  const current = () => {
    const variables = {};
    box.querySelectorAll("[data-placeholder]").forEach((row) => {
      const kind = row.querySelector("select").value;
      variables[row.dataset.placeholder] = { [kind]: row.querySelector("input").value || row.dataset.placeholder };
    });
    return variables;
  };

  const rows = () => {
    const kept = { ...known, ...current() };
    box.replaceChildren(...names().map((name) => {
      const [kind, key] = Object.entries(kept[name] || { [contactFields.includes(name) ? "field" : "attribute"]: name })[0];
      return el("div", { class: "row", "data-placeholder": name },
        el("span", { class: "badge" }, `{{${name}}}`),
        el("select", { name: `var_kind.${name}`, "aria-label": `Source of ${name}`, onchange: show },
          sources.map(([value, text]) => el("option", { value, selected: value === kind }, text))),
        el("input", { name: `var_key.${name}`, value: key, "aria-label": `Which one for ${name}`, oninput: show }));
    }));
  };

  let timer = null;
  async function show() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        const answer = await window.chatman.postJSON(form.dataset.preview, { body: body.value, variables: current() });
        preview.textContent = answer.text;
        previewFor.textContent = answer.contact ? `As ${answer.contact} would get it` : "No contact yet: placeholders show as [name]";
      } catch (error) {
        preview.textContent = error.message;
      }
    }, 200);
  }

  body.addEventListener("input", () => { rows(); show(); });
  rows();
  show();
});
