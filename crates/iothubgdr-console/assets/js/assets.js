// Assets: a filtered, paged table with its total count, and a summary of the fleet.
//
// Nothing here loads the whole fleet: the table reads one page at a time (the API's page
// tokens) and the summary is made of count queries (one asset per page with
// X-Request-Total-Count), so 100,000 assets cost the same few requests as 100.

import * as api from "./api.js";
import { h, field, replace, errorBox, pageHeading, announce } from "./dom.js";
import * as fmt from "./format.js";
import { fleetChart, legend } from "./chart.js";

const PATH = "/archivist/v2/assets";
const TYPE = "attributes.arc_display_type";
const STATUS = "attributes.iothub_status";
const HUB = "attributes.iothub_hub";
const LOCATION = "attributes.arc_home_location_identity";
const KNOWN = [TYPE, STATUS, HUB, LOCATION];
const TYPES = ["IoT Device", "IoT Edge Device"];
const STATUSES = ["enabled", "disabled"];
const PAGE_SIZES = ["25", "50", "100"];
/** How many of the newest assets are read to learn which hubs there are. */
const HUB_SAMPLE = 100;

/** The filters the address names, as [name, value] pairs of the API. */
function filtersFrom(params) {
  const filters = [];
  for (const [name, value] of params) {
    if (name.startsWith("attributes.") && name.length > "attributes.".length && value !== "") {
      filters.push([name, value]);
    }
  }
  return filters;
}

function addressOf(filters, pageSize) {
  const params = new URLSearchParams(filters);
  if (pageSize && pageSize !== PAGE_SIZES[0]) params.set("page_size", pageSize);
  const query = params.toString();
  return `#/assets${query ? `?${query}` : ""}`;
}

let locationNames = null;
async function locations() {
  if (locationNames) return locationNames;
  const names = new Map();
  try {
    const page = await api.listPage("/archivist/v2/locations", "locations", { pageSize: 100 });
    for (const location of page.items) names.set(location.identity, location.display_name || location.identity);
    locationNames = names;
  } catch {
    // Identities are shown instead of names.
  }
  return names;
}

function select(id, name, choices, current, anyLabel) {
  const control = h("select", { id, name }, h("option", { value: "" }, anyLabel));
  for (const [value, label] of choices) control.append(h("option", { value }, label));
  control.value = current || "";
  return control;
}

export function assetsPage(main, params) {
  let stopped = false;
  const filters = filtersFrom(params);
  const pageSize = PAGE_SIZES.includes(params.get("page_size")) ? params.get("page_size") : PAGE_SIZES[0];
  const current = new Map(filters);

  // ---- filters ----
  const typeSelect = select("filter-type", TYPE, TYPES.map((t) => [t, t]), current.get(TYPE), "Any type");
  const statusSelect = select("filter-status", STATUS, STATUSES.map((s) => [s, s]), current.get(STATUS), "Any status");
  const hubInput = h("input", { id: "filter-hub", name: HUB, value: current.get(HUB) || "", list: "known-hubs", spellcheck: "false", placeholder: "myhub.azure-devices.net" });
  const hubList = h("datalist", { id: "known-hubs" });
  const locationSelect = h("select", { id: "filter-location", name: LOCATION }, h("option", { value: "" }, "Any location"));
  const sizeSelect = select("page-size", "page_size", PAGE_SIZES.map((s) => [s, s]), pageSize, "25");
  sizeSelect.remove(0);
  sizeSelect.value = pageSize;
  const extraRows = h("div", { class: "extra-filters" });
  let extraCount = 0;
  function addExtra(name = "", value = "") {
    extraCount += 1;
    const n = extraCount;
    const nameInput = h("input", { id: `extra-name-${n}`, class: "extra-name", value: name, spellcheck: "false", placeholder: "iothub_tag_building" });
    const valueInput = h("input", { id: `extra-value-${n}`, class: "extra-value", value, spellcheck: "false" });
    const row = h("div", { class: "extra-filter" },
      field(`Attribute ${n}`, nameInput),
      field(`equals`, valueInput),
      h("button", { type: "button", class: "button-quiet", "aria-label": `Remove attribute filter ${n}`, onclick: () => { row.remove(); } }, "Remove"));
    extraRows.append(row);
    return nameInput;
  }
  for (const [name, value] of filters) {
    if (!KNOWN.includes(name)) addExtra(name.slice("attributes.".length), value);
  }
  const form = h("form", { role: "search", class: "filters card", id: "asset-filters", "aria-label": "Filter assets" },
    h("div", { class: "filter-grid" },
      field("Type", typeSelect),
      field("Status", statusSelect),
      field("Hub", hubInput),
      field("Location", locationSelect),
      field("Per page", sizeSelect)),
    extraRows,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "button-quiet", onclick: () => addExtra().focus() }, "Add attribute filter"),
      h("a", { href: "#/assets", class: "button-link" }, "Clear filters"),
      h("button", { type: "submit", id: "apply-filters" }, "Apply filters")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = [];
    for (const control of [typeSelect, statusSelect, hubInput, locationSelect]) {
      const value = control.value.trim();
      if (value) chosen.push([control.name, value]);
    }
    for (const row of extraRows.querySelectorAll(".extra-filter")) {
      const name = row.querySelector(".extra-name").value.trim().replace(/^attributes\./, "");
      const value = row.querySelector(".extra-value").value;
      if (name && value !== "") chosen.push([`attributes.${name}`, value]);
    }
    window.location.hash = addressOf(chosen, sizeSelect.value);
  });

  // ---- table ----
  const summary = h("p", { class: "table-summary", id: "assets-summary", "aria-live": "polite" }, "Loading…");
  const body = h("tbody");
  const table = h("table", { class: "assets-table", "aria-describedby": "assets-summary" },
    h("caption", { class: "visually-hidden" }, "Assets"),
    h("thead", {}, h("tr", {},
      ["Device", "Type", "Status", "Tracked", "Hub", "Location", "Changed"].map((c) => h("th", { scope: "col" }, c)))),
    body);
  const previous = h("button", { type: "button", class: "button-quiet", id: "page-previous", disabled: true }, "Previous page");
  const next = h("button", { type: "button", class: "button-quiet", id: "page-next", disabled: true }, "Next page");
  const tableMessage = h("div");
  const tokens = [null]; // the token of each page seen so far; [0] is the first page
  let pageIndex = 0;
  let nextToken = null;
  let total = null;

  async function loadPage(index) {
    previous.disabled = true;
    next.disabled = true;
    try {
      const [page, names] = await Promise.all([
        api.listPage(PATH, "assets", { filters, pageSize: Number(pageSize), pageToken: tokens[index], total: true }),
        locations(),
      ]);
      if (stopped) return;
      pageIndex = index;
      nextToken = page.next;
      if (page.next) tokens[index + 1] = page.next;
      if (page.total !== null) total = page.total;
      replace(body, page.items.map((asset) => assetRow(asset, names)));
      if (page.items.length === 0) {
        replace(body, h("tr", {}, h("td", { colspan: "7", class: "empty" }, filters.length ? "No asset matches these filters." : "No assets yet: start an import.")));
      }
      const first = index * Number(pageSize) + 1;
      const last = index * Number(pageSize) + page.items.length;
      const text = page.items.length
        ? `Assets ${fmt.count(first)}–${fmt.count(last)} of ${fmt.count(total ?? last)}`
        : `0 of ${fmt.count(total ?? 0)} assets`;
      summary.textContent = text;
      summary.dataset.total = String(total ?? 0);
      previous.disabled = index === 0;
      next.disabled = !nextToken;
      replace(tableMessage);
    } catch (error) {
      if (stopped || error.status === 401) return;
      summary.textContent = "";
      replace(tableMessage, errorBox(`Cannot load assets: ${error.message}`));
      previous.disabled = pageIndex === 0;
    }
  }
  previous.addEventListener("click", async () => {
    await loadPage(Math.max(0, pageIndex - 1));
    announce(summary.textContent);
  });
  next.addEventListener("click", async () => {
    if (nextToken) await loadPage(pageIndex + 1);
    announce(summary.textContent);
  });

  // ---- fleet summary ----
  const fleet = h("section", { class: "card fleet", id: "fleet", "aria-labelledby": "fleet-title" },
    h("h2", { id: "fleet-title" }, "Fleet by hub"),
    h("p", { class: "hint" }, "Counting…"));

  replace(main,
    pageHeading("Assets"),
    form,
    fleet,
    h("section", { "aria-labelledby": "assets-table-title" },
      h("h2", { id: "assets-table-title", class: "visually-hidden" }, "Asset list"),
      summary,
      tableMessage,
      h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Asset table (scrolls sideways)" }, table),
      h("nav", { class: "pager", "aria-label": "Pages" }, previous, next)),
    hubList);

  locations().then((names) => {
    for (const [identity, name] of names) locationSelect.append(h("option", { value: identity }, name));
    locationSelect.value = current.get(LOCATION) || "";
    if (current.get(LOCATION) && locationSelect.value !== current.get(LOCATION)) {
      locationSelect.append(h("option", { value: current.get(LOCATION) }, current.get(LOCATION)));
      locationSelect.value = current.get(LOCATION);
    }
  });
  loadPage(0);
  drawFleet(fleet, hubList, current.get(HUB), () => stopped);
  return () => { stopped = true; };
}

function assetRow(asset, names) {
  const a = asset.attributes || {};
  const uuid = fmt.uuidOf(asset.identity);
  const location = fmt.attributeText(a.arc_home_location_identity);
  return h("tr", { dataset: { identity: asset.identity } },
    h("th", { scope: "row" }, h("a", { href: `#/assets/${encodeURIComponent(uuid)}` }, fmt.attributeText(a.arc_display_name) || uuid)),
    h("td", {}, fmt.attributeText(a.arc_display_type)),
    h("td", {}, h("span", { class: "badge", dataset: { status: fmt.attributeText(a.iothub_status) } }, fmt.attributeText(a.iothub_status))),
    // Connection state and last activity change with every heartbeat, so they are not
    // attributes: they ride on the asset's events (its page shows them in the history).
    h("td", {}, fmt.attributeText(asset.tracked)),
    h("td", {}, fmt.attributeText(a.iothub_hub)),
    h("td", {}, names.get(location) || location),
    h("td", {}, fmt.time(asset.at_time)));
}

/** Runs `tasks` (functions returning promises) at most `limit` at a time. */
async function limited(tasks, limit) {
  const results = new Array(tasks.length);
  let nextIndex = 0;
  async function worker() {
    while (nextIndex < tasks.length) {
      const index = nextIndex++;
      results[index] = await tasks[index]();
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

async function drawFleet(section, hubList, filteredHub, isStopped) {
  const heading = section.querySelector("h2");
  try {
    // Which hubs: those of the newest assets, and the one the filter names.
    const sample = await api.listPage(PATH, "assets", { pageSize: HUB_SAMPLE, total: true });
    const fleetTotal = sample.total ?? sample.items.length;
    const hubs = new Set();
    for (const asset of sample.items) {
      const hub = asset.attributes && asset.attributes.iothub_hub;
      if (typeof hub === "string" && hub) hubs.add(hub);
    }
    if (filteredHub) hubs.add(filteredHub);
    for (const hub of hubs) hubList.append(h("option", { value: hub }));
    const count = (extra) => () => api.countOf(PATH, "assets", extra);
    const perHub = [];
    for (const hub of [...hubs].sort()) {
      const base = [[HUB, hub]];
      perHub.push({ hub, tasks: [
        count(base),
        ...TYPES.map((type) => count([...base, [TYPE, type]])),
        ...STATUSES.map((status) => count([...base, [STATUS, status]])),
      ] });
    }
    const results = await limited(perHub.flatMap((entry) => entry.tasks), 3);
    if (isStopped()) return;
    let offset = 0;
    const data = perHub.map(({ hub, tasks }) => {
      const [total, device, edge, enabled, disabled] = results.slice(offset, offset + tasks.length);
      offset += tasks.length;
      return {
        hub,
        total,
        byType: [
          { label: "IoT Device", value: device, kind: "device" },
          { label: "IoT Edge Device", value: edge, kind: "edge" },
          { label: "other type", value: total - device - edge, kind: "other" },
        ],
        byStatus: [
          { label: "enabled", value: enabled, kind: "enabled" },
          { label: "disabled", value: disabled, kind: "disabled" },
          { label: "other status", value: total - enabled - disabled, kind: "other" },
        ],
      };
    });
    const known = data.reduce((sum, hub) => sum + hub.total, 0);
    const parts = [heading];
    if (data.length === 0) {
      parts.push(h("p", { class: "empty" }, fleetTotal ? `${fmt.count(fleetTotal)} assets, none imported from a hub.` : "No assets yet."));
    } else {
      parts.push(
        h("p", { class: "visually-hidden", id: "fleet-chart-title" }, `Bar chart of devices per hub by type and by status, ${fmt.count(known)} devices in ${data.length} hubs. The same numbers are in the table below it.`),
        h("div", { class: "fleet-body" },
          h("div", { class: "fleet-graphic" },
            fleetChart(data, "fleet-chart-title"),
            legend([
              { kind: "device", label: "IoT Device" }, { kind: "edge", label: "IoT Edge Device" },
              { kind: "enabled", label: "enabled" }, { kind: "disabled", label: "disabled" },
              { kind: "other", label: "other" },
            ])),
          h("div", { class: "table-scroll fleet-numbers", tabindex: "0", role: "region", "aria-label": "Devices per hub (scrolls sideways)" },
            fleetTable(data))));
    }
    if (fleetTotal > known) {
      parts.push(h("p", { class: "hint" }, `${fmt.count(fleetTotal - known)} of ${fmt.count(fleetTotal)} assets are in hubs not among the newest ${HUB_SAMPLE} assets, or were not imported: filter by hub to count one.`));
    }
    replace(section, ...parts);
  } catch (error) {
    if (isStopped() || error.status === 401) return;
    replace(section, heading, errorBox(`Cannot count the fleet: ${error.message}`));
  }
}

/** The chart's numbers as a table (one column per hub), each a link to those assets. */
function fleetTable(data) {
  const link = (filters, value) => h("a", { href: addressOf(filters) }, fmt.count(value));
  const measures = [
    ["Devices", [], (hub) => hub.total],
    ["IoT Device", [[TYPE, "IoT Device"]], (hub) => hub.byType[0].value],
    ["IoT Edge Device", [[TYPE, "IoT Edge Device"]], (hub) => hub.byType[1].value],
    ["enabled", [[STATUS, "enabled"]], (hub) => hub.byStatus[0].value],
    ["disabled", [[STATUS, "disabled"]], (hub) => hub.byStatus[1].value],
  ];
  return h("table", { class: "fleet-table" },
    h("caption", { class: "visually-hidden" }, "Devices per hub"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Hub"), data.map((hub) => h("th", { scope: "col" }, hub.hub)))),
    h("tbody", {}, measures.map(([label, filters, value]) => h("tr", { dataset: { measure: label } },
      h("th", { scope: "row" }, label),
      data.map((hub) => h("td", {}, link([[HUB, hub.hub], ...filters], value(hub))))))));
}
