// The inbox thread: new messages and status changes appear without reloading. Every value
// from the server is put in the page as text (chatman.el), never as HTML.
"use strict";

(() => {
  const EVERY_MS = 2000;
  const stamp = (iso) =>
    new Date(iso).toLocaleString([], { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" });

  const bubble = (e) => {
    const small = chatman.el("small", {}, stamp(e.at));
    if (e.direction === "out") {
      small.append(` · ${e.purpose || ""} · `, chatman.el("span", { class: `badge status-${e.status}` }, e.status || ""));
      if (e.reason) small.append(" " + e.reason);
    }
    return chatman.el("div", { class: `bubble ${e.direction}`, "data-entry": e.id }, chatman.el("span", { class: "text" }, e.text || ""), small);
  };

  const start = (thread) => {
    const url = thread.dataset.thread;
    let last = "";
    const tick = async () => {
      try {
        const data = await chatman.json(url);
        const key = JSON.stringify(data.entries);
        if (key !== last) {
          last = key;
          const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 40;
          thread.replaceChildren(
            ...(data.entries.length
              ? data.entries.map(bubble)
              : [chatman.el("p", { class: "empty", "data-empty": "" }, "Nothing in this conversation yet.")]),
          );
          if (atBottom) thread.scrollTop = thread.scrollHeight;
        }
        thread.dataset.polled = String(Number(thread.dataset.polled || 0) + 1);
      } catch (_) {
        // the next tick tries again
      }
      setTimeout(tick, EVERY_MS);
    };
    setTimeout(tick, EVERY_MS);
  };

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-thread]").forEach(start);
  });
})();
