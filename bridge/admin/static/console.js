// pbx-bridge console: optional niceties. Every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Copy the webhook URL (the button stays hidden without JavaScript).
  for (const button of document.querySelectorAll("button.copy")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        document.execCommand("copy");
      }
      button.textContent = button.dataset.done;
    });
  }
  // Calls in progress, pushed by the server (server-sent events).
  const table = document.querySelector("table.live[data-stream]");
  if (table && window.EventSource) {
    const body = table.querySelector("tbody");
    const source = new EventSource(table.dataset.stream);
    source.addEventListener("calls", (message) => {
      const calls = JSON.parse(message.data);
      body.replaceChildren();
      if (!calls.length) {
        const row = body.insertRow();
        const cell = row.insertCell();
        cell.colSpan = 5;
        cell.textContent = table.dataset.empty;
      }
      for (const c of calls) {
        const row = body.insertRow();
        const since = new Date(c.since * 1000).toLocaleString();
        for (const text of [since, c.direction, `${c.caller} → ${c.callee}`, c.state, c.uuid]) {
          row.insertCell().textContent = text;
        }
      }
    });
  }
});
