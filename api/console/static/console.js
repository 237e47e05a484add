// Follows a connection test on its page until it ends: pending, queued, running on a worker, then
// success or failed with the message. Without script the page still shows the state it was served with.
"use strict";

const TERMINAL = new Set(["success", "failed"]);
const POLL_MS = 400;

function showTest(panel, test) {
  const state = panel.querySelector("[data-field=state]");
  state.textContent = test.state === "running" && test.worker ? `running on ${test.worker}` : test.state;
  state.className = `state ${test.state}`;
  panel.querySelector("[data-field=message]").textContent = test.result_message || "";
  for (const name of ["worker", "created_at", "started_at", "finished_at"]) {
    panel.querySelector(`[data-field=${name}]`).textContent = test[name] || "–";
  }
}

async function followTest(panel) {
  const url = panel.dataset.testState;
  for (;;) {
    try {
      const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (answer.ok) {
        const test = await answer.json();
        showTest(panel, test);
        if (TERMINAL.has(test.state)) return;
      }
    } catch (error) {
      // The API is away for a moment: keep following.
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

// A form that undoes something (a revocation) asks first.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  const panel = document.querySelector("[data-test-state]");
  if (panel && !TERMINAL.has(panel.querySelector("[data-field=state]").classList[1])) followTest(panel);
});
