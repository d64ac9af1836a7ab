// CSV import: preview the first rows of the chosen file and let the marketer say where each
// column goes; the choice travels as the form's `mapping` (column -> target or null).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("import-form");
  if (!form) return;
  const { el } = window.chatman;
  const input = form.querySelector('input[name="file"]');
  const mapping = form.querySelector('input[name="mapping"]');
  const box = document.getElementById("import-preview");
  const table = document.getElementById("import-table");
  const problem = document.getElementById("import-problem");
  const slug = (name) => name.trim().toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");

  const choices = (column, planned) => {
    const attribute = planned && planned.startsWith("attributes.") ? planned : "attributes." + slug(column);
    return [
      ["phone", "Phone"], ["name", "Name"], ["timezone", "Timezone"], ["wa_id", "WhatsApp id"],
      [attribute, `Attribute “${attribute.slice("attributes.".length)}”`], ["", "Skip this column"],
    ];
  };

  const remember = () => {
    const chosen = {};
    table.querySelectorAll("select[data-column]").forEach((s) => (chosen[s.dataset.column] = s.value || null));
    mapping.value = JSON.stringify(chosen);
  };

  input.addEventListener("change", async () => {
    mapping.value = "";
    table.replaceChildren();
    problem.textContent = "";
    const file = input.files[0];
    if (!file) return (box.hidden = true);
    const data = new FormData();
    data.append("file", file.slice(0, 64 * 1024), file.name);
    let preview;
    try {
      preview = await window.chatman.json(form.dataset.preview, { method: "POST", body: data });
    } catch (error) {
      box.hidden = false;
      problem.textContent = error.message;
      return;
    }
    problem.textContent = preview.problem || "";
    const selects = preview.header.map((column) => {
      const planned = preview.targets[column] || "";
      const select = el("select", { "data-column": column, "aria-label": `Where ${column} goes`, onchange: remember },
        choices(column, planned).map(([value, text]) => el("option", { value, selected: value === planned }, text)));
      return el("th", {}, el("div", {}, column), select);
    });
    table.append(el("tr", {}, selects));
    preview.rows.forEach((row) => table.append(el("tr", {}, preview.header.map((_, i) => el("td", {}, row[i] ?? "")))));
    box.hidden = false;
    remember();
  });
});
