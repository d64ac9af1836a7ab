// Chatman admin: progressive behaviour for server-rendered pages. The content security policy
// forbids inline script, so pages describe what they need with data- attributes.
"use strict";

const chatman = (window.chatman = {});

chatman.csrf = () => document.querySelector('meta[name="csrf-token"]').content;

chatman.json = async (url, options = {}) => {
  const response = await fetch(url, {
    credentials: "same-origin",
    ...options,
    headers: { Accept: "application/json", "X-CSRFToken": chatman.csrf(), ...(options.headers || {}) },
  });
  if (response.redirected && new URL(response.url).pathname.endsWith("/login")) {
    window.location.reload(); // signed out meanwhile
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.message || `HTTP ${response.status}`);
    error.body = body;
    throw error;
  }
  return body;
};

chatman.postJSON = (url, data) =>
  chatman.json(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });

chatman.el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
};

chatman.setProgress = (bar, fraction) => {
  const percent = Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100);
  bar.setAttribute("aria-valuenow", percent);
  const fill = bar.querySelector(".bar");
  fill.dataset.width = percent;
  fill.style.width = percent + "%";
  const label = bar.querySelector(".progress-label");
  if (label) label.textContent = percent + "%";
};

// Bars drawn by the server: their width comes from data-width (no inline style under the CSP).
const sizeBars = (root) => {
  root.querySelectorAll("[data-width]").forEach((node) => (node.style.width = node.dataset.width + "%"));
};

// <div data-poll="/admin/.../progress.json">: refreshed until the answer says done. Inside,
// [data-bind=key] shows answer[key], and [data-progress=key] is a bar for answer[key] (0 to 1);
// data-after-done=ms keeps refreshing, that much slower, once it is done.
const poll = (root) => {
  const url = root.dataset.poll;
  const every = Number(root.dataset.every || 1500);
  const tick = async () => {
    let data;
    try {
      data = await chatman.json(url);
    } catch (error) {
      root.querySelectorAll("[data-poll-error]").forEach((n) => (n.textContent = error.message));
      setTimeout(tick, every * 2);
      return;
    }
    root.querySelectorAll("[data-bind]").forEach((node) => {
      const value = data[node.dataset.bind];
      node.textContent = value === null || value === undefined ? "" : value;
    });
    root.querySelectorAll("[data-progress]").forEach((bar) => chatman.setProgress(bar, data[bar.dataset.progress]));
    root.dispatchEvent(new CustomEvent("chatman:polled", { detail: data }));
    if (data.done) {
      root.dataset.done = "true";
      if (root.dataset.reloadWhenDone !== undefined) window.location.reload();
      // Statuses (delivered, read) go on arriving after the last message went out.
      else if (root.dataset.afterDone) setTimeout(tick, Number(root.dataset.afterDone));
    } else setTimeout(tick, every);
  };
  tick();
};

// <select name="kind" data-controls> shows the [data-show-when="kind=a,b"] parts that fit.
const toggles = (form) => {
  const apply = () => {
    form.querySelectorAll("[data-show-when]").forEach((part) => {
      const [name, values] = part.dataset.showWhen.split("=");
      const control = form.querySelector(`[name="${name}"]:checked, select[name="${name}"]`);
      const shown = control && values.split(",").includes(control.value);
      part.hidden = !shown;
      part.querySelectorAll("input, select, textarea").forEach((field) => (field.disabled = !shown));
    });
  };
  form.addEventListener("change", apply);
  apply();
};

// <button data-add-row="tmpl-id" data-into="container-id">: a copy of the <template>, with
// __n__ in names replaced by the next row number.
const addRow = (button) => {
  button.addEventListener("click", () => {
    const template = document.getElementById(button.dataset.addRow);
    const into = document.getElementById(button.dataset.into);
    const n = into.children.length;
    const html = template.innerHTML.replaceAll("__n__", String(n)).replaceAll("__N__", String(n + 1));
    into.insertAdjacentHTML("beforeend", html);
  });
};

// The server shows times and buckets charts in the marketer's zone.
try {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone) document.cookie = `tz=${encodeURIComponent(zone)}; path=/admin; SameSite=Lax`;
} catch (_) {}

document.addEventListener("DOMContentLoaded", () => {
  sizeBars(document);
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("form[data-toggles]").forEach(toggles);
  document.querySelectorAll("[data-add-row]").forEach(addRow);
  document.querySelectorAll("[data-confirm]").forEach((node) =>
    node.addEventListener("click", (event) => {
      if (!window.confirm(node.dataset.confirm)) event.preventDefault();
    }),
  );
  document.querySelectorAll("[data-autosubmit]").forEach((node) =>
    node.addEventListener("change", () => node.form.requestSubmit()),
  );
});
