// Imports: start one, watch every import's progress live, cancel and delete.
//
// While any import shown is not done the list is polled every second, otherwise every
// five. Rows are updated in place (keyed by identity), so focus and screen-reader position
// survive each refresh; only state changes (finished, failed, cancelled) are announced.

import * as api from "./api.js";
import { h, field, replace, announce, confirmAction, errorBox, pageHeading } from "./dom.js";
import * as fmt from "./format.js";

const PATH = "/archivist/v2/iothubgdr";
const PAGE_SIZE = 25;
const BUSY_POLL_MS = 1000;
const IDLE_POLL_MS = 5000;

const STATUS_TEXT = {
  STATUS_PENDING: "Pending",
  STATUS_INPROGRESS: "In progress",
  STATUS_FINISHED: "Finished",
  STATUS_CANCELLED: "Cancelled",
  FAILED: "Failed",
};

/** What the page shows of an operation, whether it succeeded or failed. */
function stateOf(operation) {
  const failed = Boolean(operation.error);
  const part = operation.error || operation.result || {};
  return {
    identity: operation.identity,
    done: Boolean(operation.done),
    status: failed ? "FAILED" : part.status || "STATUS_PENDING",
    name: part.display_name || "",
    count: Number(part.number_assets_imported || 0),
    total: part.number_devices_total === undefined ? null : Number(part.number_devices_total),
    location: part.arc_home_location_identity || "",
    error: failed ? part.error_message || "the import failed" : "",
    accepted: operation.timestamp_accepted,
    finished: operation.timestamp_finished,
  };
}

/** The bar's percentage; `null` (an indeterminate bar) while the hub's count is unknown. */
function percentOf(state) {
  if (state.total === null) {
    if (!state.done) return null;
    return state.status === "STATUS_FINISHED" ? 100 : 0;
  }
  if (state.total === 0) return state.done ? 100 : 0;
  return Math.min(100, Math.floor((state.count / state.total) * 100));
}

/** One import's row, updated in place. */
class ImportRow {
  constructor(state, actions) {
    this.samples = [];
    this.name = h("span", { class: "import-name" });
    this.badge = h("span", { class: "badge" });
    this.bar = h("progress", { max: "100", class: "import-bar" });
    this.figures = h("span", { class: "import-figures" });
    this.when = h("span", { class: "import-when" });
    this.error = h("p", { class: "error import-error", hidden: true });
    this.cancelButton = h("button", { type: "button", class: "button-quiet", onclick: () => actions.cancel(this.state) }, "Cancel");
    this.deleteButton = h("button", { type: "button", class: "button-danger-quiet", onclick: () => actions.remove(this.state) }, "Delete");
    const barId = `bar-${fmt.uuidOf(state.identity)}`;
    this.bar.id = barId;
    this.element = h("li", { class: "import", dataset: { identity: state.identity } },
      h("div", { class: "import-head" }, h("h3", {}, this.name), this.badge),
      h("label", { class: "visually-hidden", for: barId }, "Progress"),
      this.bar,
      h("p", { class: "import-line" }, this.figures, this.when),
      this.error,
      h("div", { class: "actions" }, this.cancelButton, this.deleteButton));
    this.update(state);
  }

  update(state) {
    const previous = this.state;
    this.state = state;
    const now = performance.now();
    this.samples.push({ t: now, count: state.count });
    // The rate over the last ten seconds of polls, so a pause shows as a slower rate.
    this.samples = this.samples.filter((s) => now - s.t <= 10_000);
    this.name.textContent = state.name || "(no name)";
    this.badge.textContent = STATUS_TEXT[state.status] || state.status;
    this.badge.dataset.status = state.status;
    const percent = percentOf(state);
    if (percent === null) {
      this.bar.removeAttribute("value");
    } else {
      this.bar.value = percent;
    }
    this.bar.dataset.count = String(state.count);
    this.bar.setAttribute("aria-valuetext", this.figureText(state, percent));
    this.figures.textContent = this.figureText(state, percent);
    const accepted = `started ${fmt.time(state.accepted)}`;
    this.when.textContent = state.finished ? `${accepted}, ended ${fmt.time(state.finished)}` : accepted;
    this.error.hidden = !state.error;
    this.error.textContent = state.error ? `Error: ${state.error}` : "";
    this.cancelButton.hidden = state.done;
    if (previous && !previous.done && state.done) {
      announce(`Import ${state.name} ${(STATUS_TEXT[state.status] || "").toLowerCase()}: ${fmt.count(state.count)} devices.`);
    }
  }

  figureText(state, percent) {
    let text = fmt.count(state.count);
    if (state.total !== null) text += ` of ${fmt.count(state.total)}`;
    text += state.count === 1 ? " device" : " devices";
    if (percent !== null) text += ` (${percent}%)`;
    const rate = this.rate(state);
    if (rate) text += ` · ${rate}`;
    return text;
  }

  rate(state) {
    if (!state.done && this.samples.length >= 2) {
      const first = this.samples[0];
      const last = this.samples[this.samples.length - 1];
      return fmt.rate(((last.count - first.count) * 1000) / (last.t - first.t));
    }
    if (state.done && state.accepted && state.finished && state.count > 0) {
      // Timestamps are whole seconds: a sub-second import counts as one second.
      const seconds = Math.max(1, (Date.parse(state.finished) - Date.parse(state.accepted)) / 1000);
      return fmt.rate(state.count / seconds);
    }
    return "";
  }
}

async function locationOptions(select) {
  try {
    const page = await api.listPage("/archivist/v2/locations", "locations", { pageSize: 100 });
    for (const location of page.items) {
      select.append(h("option", { value: location.identity }, location.display_name || location.identity));
    }
  } catch {
    // The form still works without a location.
  }
}

export function importsPage(main) {
  let stopped = false;
  let timer = null;
  let nextToken = null;
  const rows = new Map();
  const list = h("ol", { class: "imports", "aria-label": "Imports, newest first" });
  const listMessage = h("div");
  const more = h("button", { type: "button", class: "button-quiet", hidden: true, onclick: loadOlder }, "Show older imports");

  const actions = {
    async cancel(state) {
      const sure = await confirmAction("Cancel this import?", `“${state.name}” stops before its next page. The ${fmt.count(state.count)} assets written so far stay.`, "Cancel import");
      if (!sure) return;
      try {
        const answer = await api.call("POST", `/archivist/v2/${state.identity}:cancel`);
        show([answer.body], false);
        announce(`Import ${state.name} cancelled.`);
      } catch (error) {
        replace(listMessage, errorBox(`Cannot cancel: ${error.message}`));
      }
    },
    async remove(state) {
      const text = state.done
        ? `“${state.name}” disappears from the list. Its assets stay.`
        : `“${state.name}” disappears from the list but keeps running: cancel it first to stop it.`;
      const sure = await confirmAction("Delete this import?", text, "Delete import");
      if (!sure) return;
      try {
        await api.call("DELETE", `/archivist/v2/${state.identity}`);
        const row = rows.get(state.identity);
        if (row) row.element.remove();
        rows.delete(state.identity);
        announce(`Import ${state.name} deleted.`);
        document.getElementById("page-title")?.focus();
      } catch (error) {
        replace(listMessage, errorBox(`Cannot delete: ${error.message}`));
      }
    },
  };

  /** Shows operations: updates known rows, adds new ones (at the top when `fresh`). */
  function show(operations, fresh) {
    const added = [];
    for (const operation of operations) {
      const state = stateOf(operation);
      const known = rows.get(state.identity);
      if (known) {
        known.update(state);
      } else {
        const row = new ImportRow(state, actions);
        rows.set(state.identity, row);
        added.push(row.element);
      }
    }
    if (fresh) list.prepend(...added);
    else list.append(...added);
    empty.hidden = rows.size > 0;
  }

  async function refresh() {
    if (stopped) return;
    try {
      const page = await api.listPage(PATH, "operations", { pageSize: PAGE_SIZE });
      if (stopped) return;
      // Newest first: imports the list did not have yet go on top, in the server's order.
      show(page.items, true);
      if (nextToken === null && page.next && rows.size <= PAGE_SIZE) {
        nextToken = page.next;
        more.hidden = false;
      }
      replace(listMessage);
    } catch (error) {
      if (stopped || error.status === 401) return;
      replace(listMessage, errorBox(`Cannot load the imports: ${error.message}`));
    }
    schedule();
  }

  function schedule() {
    if (stopped) return;
    const busy = [...rows.values()].some((row) => !row.state.done);
    timer = setTimeout(refresh, busy ? BUSY_POLL_MS : IDLE_POLL_MS);
  }

  async function loadOlder() {
    if (!nextToken) return;
    try {
      const page = await api.listPage(PATH, "operations", { pageSize: PAGE_SIZE, pageToken: nextToken });
      show(page.items, false);
      nextToken = page.next;
      more.hidden = !nextToken;
    } catch (error) {
      replace(listMessage, errorBox(`Cannot load older imports: ${error.message}`));
    }
  }

  // The start form. The connection string is a password field, sent once and cleared.
  const nameInput = h("input", { name: "display_name", required: true, maxlength: "1024", id: "import-name", autocomplete: "off" });
  const secretInput = h("input", { name: "secret", type: "password", required: true, maxlength: "1024", id: "import-secret", autocomplete: "off", spellcheck: "false" });
  const locationSelect = h("select", { name: "arc_home_location_identity", id: "import-location" }, h("option", { value: "" }, "No location"));
  const formMessage = h("div", { id: "import-form-message" });
  const startButton = h("button", { type: "submit" }, "Start import");
  const form = h("form", { class: "card", id: "start-import", "aria-labelledby": "start-import-title" },
    h("h2", { id: "start-import-title" }, "Start an import"),
    field("Name", nameInput),
    field("Hub connection string", secretInput, "HostName=…;SharedAccessKeyName=…;SharedAccessKey=… (or the Event Hub-compatible form). Sent once over this connection and never shown again."),
    field("Home location", locationSelect),
    formMessage,
    startButton);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { display_name: nameInput.value.trim(), secret: secretInput.value };
    secretInput.value = "";
    if (locationSelect.value) body.arc_home_location_identity = locationSelect.value;
    startButton.disabled = true;
    replace(formMessage);
    try {
      const answer = await api.call("POST", PATH, { body });
      body.secret = "";
      show([answer.body], true);
      nameInput.value = "";
      replace(formMessage, h("p", { class: "notice", role: "status" }, `Import “${stateOf(answer.body).name}” started.`));
      clearTimeout(timer);
      schedule();
    } catch (error) {
      body.secret = "";
      replace(formMessage, errorBox(`Not started: ${error.message}`));
    } finally {
      startButton.disabled = false;
    }
  });

  const empty = h("p", { class: "empty", hidden: true }, "No imports yet. Start one with the form.");
  replace(main,
    pageHeading("Imports"),
    h("div", { class: "split" },
      h("section", { "aria-labelledby": "imports-list-title", class: "grow" },
        h("h2", { id: "imports-list-title" }, "Newest first"),
        listMessage, empty, list, more),
      form));
  locationOptions(locationSelect);
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
