// Triggers, flows and post-campaign rules: the "test a message" box and the rule dry run
// answer in place, and a rule's action rows can be added and removed. Everything is built
// with chatman.el (text nodes), never innerHTML; without JavaScript the forms post as pages.
"use strict";

(() => {
  const { el } = window.chatman;

  const table = (head, rows) =>
    el("div", { class: "table-wrap" }, el("table", {}, el("tr", {}, head.map((h) => el("th", {}, h))), rows));

  const failure = (box, error) => {
    const reasons = Object.entries((error.body && error.body.errors) || {}).map(([field, why]) =>
      el("li", {}, `${field}: ${[].concat(why).join(", ")}`),
    );
    box.replaceChildren(el("p", { class: "error" }, error.message), reasons.length ? el("ul", {}, reasons) : "");
  };

  const whyNot = (c) => (c.chosen ? el("b", {}, "answers") : c.active ? "outranked" : "outside its active hours");

  // The "test a message" box on the triggers page.
  const testBox = (form) => {
    const box = document.getElementById("trigger-test-result");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = {
        text: form.elements.text.value.trim() || null,
        button_payload: form.elements.button_payload.value.trim() || null,
      };
      box.replaceChildren(el("p", { class: "muted" }, "Testing…"));
      let result;
      try {
        result = await chatman.postJSON(form.action, data);
      } catch (error) {
        failure(box, error);
        return;
      }
      const opt = result.opt || {};
      const stopped = opt.kind === "opt_out" || opt.kind === "opt_out_prompt";
      const verdict = opt.kind
        ? el(
            "p",
            { class: "answer", "data-opt": opt.kind },
            opt.label,
            opt.phrase ? ` (score ${opt.score}, like “${opt.phrase}”).` : ".",
          )
        : null;
      const answer = result.trigger_id
        ? el(
            "p",
            { class: "answer" },
            "Answered by ",
            el("b", { "data-answer": "" }, result.trigger_name),
            result.fallback ? " (the fallback: nothing else matched)." : ".",
          )
        : el(
            "p",
            { class: "answer" },
            stopped
              ? "No trigger answers a message that asks to stop."
              : "No trigger would answer this message. Add a trigger for it, or a fallback.",
          );
      const stage =
        result.trigger_id && result.stage
          ? el(
              "p",
              { "data-stage": result.stage },
              "Matched as ",
              el("b", {}, result.stage),
              result.phrase ? [" by the example phrase “", el("b", { "data-phrase": "" }, result.phrase), "”"] : null,
              ", score ",
              el("b", { "data-score": "" }, result.score),
              ".",
            )
          : null;
      const rows = result.candidates.map((c) =>
        el(
          "tr",
          {},
          el("td", {}, c.name),
          el("td", {}, c.stage, c.phrase ? [el("br"), el("small", { class: "muted" }, `“${c.phrase}”`)] : null),
          el("td", {}, c.score),
          el("td", {}, c.priority),
          el("td", {}, whyNot(c)),
        ),
      );
      box.replaceChildren(
        verdict || "",
        answer,
        stage || "",
        rows.length ? table(["Trigger", "Matched as", "Score", "Priority", ""], rows) : "",
      );
    });
  };

  // The dry-run button on a rule's page.
  const dryRun = (form) => {
    const box = document.getElementById("dry-run-result");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      box.replaceChildren(el("p", { class: "muted" }, "Working it out…"));
      let dry;
      try {
        dry = await chatman.postJSON(form.action, {});
      } catch (error) {
        failure(box, error);
        return;
      }
      const rows = dry.sample.map((s) =>
        el(
          "tr",
          {},
          el("td", {}, el("a", { href: `/admin/contacts/${s.contact_id}` }, s.name || `contact ${s.contact_id}`)),
          el("td", {}, s.phone || ""),
          el("td", {}, s.message_id),
        ),
      );
      box.replaceChildren(
        el("p", {}, "When a message is ", el("b", {}, dry.condition), ", it would ", el("b", {}, dry.actions.join("; ")), "."),
        el(
          "p",
          {},
          el("b", { "data-would-fire": "" }, dry.would_fire),
          ` messages would fire it now; ${dry.fired_before} already fired it (never again).`,
        ),
        rows.length ? table(["Contact", "Phone", "Message"], rows) : "",
      );
    });
  };

  document.addEventListener("DOMContentLoaded", () => {
    const test = document.getElementById("trigger-test");
    if (test) testBox(test);
    const dry = document.getElementById("rule-dry-run");
    if (dry) dryRun(dry);
  });

  document.addEventListener("click", (event) => {
    // A new action row: show only the inputs its action needs (admin.js toggles on change).
    const add = event.target.closest("[data-add-row]");
    if (add && add.form) add.form.dispatchEvent(new Event("change"));
    // Removing a row keeps its place (rows are numbered by position) but empties it: the
    // server drops rows without an action.
    const remove = event.target.closest("[data-remove-row]");
    if (remove) {
      const row = remove.closest(".action-row");
      const type = row.querySelector('select[name$="-type"]');
      if (type) type.value = "";
      row.hidden = true;
      if (remove.form) remove.form.dispatchEvent(new Event("change"));
    }
  });
})();
