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

// A trigger's page: its state, and its log lines as the triggerer ships them, until it ends.
const TRIGGER_ENDED = new Set(["fired", "failed", "timed_out", "cancelled"]);
const TRIGGER_POLL_MS = 1000;

function appendLines(log, lines) {
  for (const line of lines) {
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = line.logged_at.slice(11, 19);
    const level = document.createElement("span");
    level.className = "level";
    level.textContent = line.level;
    item.append(time, " ", level, " ", line.message);
    log.append(item);
    log.dataset.afterId = String(line.id);
  }
}

async function followTrigger(panel, log) {
  for (;;) {
    let ended = false;
    try {
      const state = await fetch(panel.dataset.triggerState, { headers: { Accept: "application/json" } });
      if (state.ok) {
        const trigger = await state.json();
        const field = panel.querySelector("[data-field=state]");
        field.textContent = trigger.state;
        field.className = `state ${trigger.state}`;
        for (const name of ["triggerer", "event_type", "event_payload", "failure", "started_at", "finished_at"]) {
          panel.querySelector(`[data-field=${name}]`).textContent = trigger[name] || "–";
        }
        ended = TRIGGER_ENDED.has(trigger.state);
        if (ended) panel.querySelector("form")?.remove();
      }
      const lines = await fetch(`${log.dataset.triggerLogs}?after_id=${log.dataset.afterId}`, {
        headers: { Accept: "application/json" },
      });
      if (lines.ok) appendLines(log, (await lines.json()).lines);
    } catch (error) {
      // The API is away for a moment: keep following.
    }
    if (ended) return;
    await new Promise((resolve) => setTimeout(resolve, TRIGGER_POLL_MS));
  }
}

// A connection form shows the fields the chosen conn type uses, under its labels: a field it does not
// use is hidden and disabled, so it is not sent either.
function applyConnForm(form) {
  const chosen = JSON.parse(form.dataset.connForms)[form.elements.conn_type.value];
  if (!chosen) return;
  for (const field of form.querySelectorAll("[data-form-field]")) {
    const name = field.dataset.formField;
    field.hidden = field.disabled = chosen.hidden.includes(name);
    field.querySelector("[data-label]").textContent = chosen.labels[name];
    const input = field.querySelector(`#${name}`);
    if (input) input.placeholder = chosen.placeholders[name];
  }
}

// A new worker's environment, saved as a file from the page itself: the server shows it only once.
function download(button) {
  const text = document.getElementById(button.dataset.download).value;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  link.download = button.dataset.filename;
  link.click();
  URL.revokeObjectURL(link.href);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-download]")) {
    button.addEventListener("click", () => download(button));
  }
  const connForm = document.querySelector("[data-conn-forms]");
  if (connForm) connForm.elements.conn_type.addEventListener("change", () => applyConnForm(connForm));
  const panel = document.querySelector("[data-test-state]");
  if (panel && !TERMINAL.has(panel.querySelector("[data-field=state]").classList[1])) followTest(panel);
  const trigger = document.querySelector("[data-trigger-state]");
  const log = document.querySelector("[data-trigger-logs]");
  if (trigger && log && !TRIGGER_ENDED.has(trigger.querySelector("[data-field=state]").classList[1])) {
    followTrigger(trigger, log);
  }
});
