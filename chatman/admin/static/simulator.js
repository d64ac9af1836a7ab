// The chat simulator's phone: what the customer writes is posted as JSON (with the CSRF
// header), the conversation is polled, and a template's buttons are quick replies that send
// their payload. Every value is put in the page as text (chatman.el), never as HTML.
"use strict";

(() => {
  const EVERY_MS = 1000;

  const start = (phone) => {
    const screen = phone.querySelector("#screen");
    const form = phone.querySelector("#say");
    const input = form.querySelector("input[name=body]");
    const error = phone.querySelector("#say-error");
    const who = { phone: phone.dataset.phone, profile_name: phone.dataset.name || null };
    let last = "";

    const say = async (message) => {
      error.hidden = true;
      try {
        await chatman.postJSON(phone.dataset.say, { ...who, ...message });
      } catch (failure) {
        error.textContent = failure.message;
        error.hidden = false;
        return false;
      }
      refresh();
      return true;
    };

    const bubble = (m, isLast) => {
      const mine = m.from === "customer";
      const node = chatman.el(
        "div",
        { class: `bubble ${mine ? "out" : "in"}`, "data-from": m.from },
        m.text || m.content_sid || "",
      );
      if (!mine && m.status) node.append(chatman.el("small", {}, m.status));
      if (!mine && isLast && m.buttons && m.buttons.length) {
        node.append(
          chatman.el(
            "div",
            { class: "quick-replies" },
            m.buttons.map((b) =>
              chatman.el(
                "button",
                {
                  type: "button",
                  "data-payload": b.payload,
                  onclick: () => say({ button_payload: b.payload, button_text: b.text, replied_sid: m.sid }),
                },
                b.text,
              ),
            ),
          ),
        );
      }
      return node;
    };

    const draw = (messages) => {
      const key = JSON.stringify(messages);
      if (key === last) return;
      last = key;
      const lastBusiness = messages.map((m) => m.from).lastIndexOf("business");
      const isLastOverall = lastBusiness === messages.length - 1;
      screen.replaceChildren(
        ...(messages.length
          ? messages.map((m, i) => bubble(m, isLastOverall && i === lastBusiness))
          : [chatman.el("p", { class: "empty" }, "Say hello, or write one of your trigger words, to see what your bot answers.")]),
      );
      screen.scrollTop = screen.scrollHeight;
    };

    const refresh = async () => {
      try {
        draw((await chatman.json(phone.dataset.messages)).messages);
        phone.dataset.polled = String(Number(phone.dataset.polled || 0) + 1);
      } catch (_) {
        // the next poll tries again
      }
    };

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = input.value.trim();
      if (!body) return;
      input.disabled = true;
      if (await say({ body })) input.value = "";
      input.disabled = false;
      input.focus();
    });

    const loop = async () => {
      await refresh();
      setTimeout(loop, EVERY_MS);
    };
    loop();
  };

  document.addEventListener("DOMContentLoaded", () => {
    const phone = document.getElementById("phone");
    if (phone) start(phone);
  });
})();
