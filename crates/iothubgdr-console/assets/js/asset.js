// One asset: its attributes, and its event history as a timeline once the server records
// events (`GET /archivist/v2/assets/<uuid>/events`); until then, "no history yet".

import * as api from "./api.js";
import { h, replace, errorBox, pageHeading } from "./dom.js";
import * as fmt from "./format.js";

const EVENTS_PAGE = 50;

export function assetPage(main, uuid) {
  let stopped = false;
  replace(main, pageHeading("Asset"), h("p", { class: "hint" }, "Loading…"));
  load();

  async function load() {
    let asset;
    try {
      asset = (await api.call("GET", `/archivist/v2/assets/${encodeURIComponent(uuid)}`)).body;
    } catch (error) {
      if (stopped || error.status === 401) return;
      replace(main, pageHeading("Asset"), errorBox(error.status === 404 ? "There is no such asset (or it belongs to another tenant)." : `Cannot load the asset: ${error.message}`),
        h("p", {}, h("a", { href: "#/assets" }, "Back to assets")));
      return;
    }
    if (stopped) return;
    const attributes = asset.attributes || {};
    const names = Object.keys(attributes).sort();
    const title = fmt.attributeText(attributes.arc_display_name) || uuid;
    const timeline = h("section", { class: "card", "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, "History"),
      h("p", { class: "hint" }, "Loading…"));
    replace(main,
      h("p", { class: "breadcrumb" }, h("a", { href: "#/assets" }, "Assets"), " / ", fmt.attributeText(attributes.arc_display_name) || uuid),
      pageHeading(title),
      h("p", { class: "identity" }, h("span", { class: "label" }, "Identity "), h("code", {}, asset.identity)),
      h("div", { class: "split" },
        h("section", { class: "card grow", "aria-labelledby": "attributes-title" },
          h("h2", { id: "attributes-title" }, "Attributes"),
          h("dl", { class: "attributes" }, names.map((name) => [
            h("dt", {}, name),
            h("dd", {}, attributeValue(name, attributes[name])),
          ]))),
        timeline));
    loadEvents(timeline, null);
  }

  async function loadEvents(section, pageToken) {
    const heading = section.querySelector("h2");
    let page;
    try {
      page = await api.listPage(`/archivist/v2/assets/${encodeURIComponent(uuid)}/events`, "events", { pageSize: EVENTS_PAGE, pageToken });
    } catch (error) {
      if (stopped || error.status === 401) return;
      // A server without recorded events answers 404 here: the asset simply has no history.
      if (!pageToken) replace(section, heading, h("p", { class: "empty", id: "no-history" }, "No history yet."));
      else section.append(errorBox(`Cannot load older events: ${error.message}`));
      return;
    }
    if (stopped) return;
    let list = section.querySelector("ol.timeline");
    if (!pageToken) {
      if (page.items.length === 0) {
        replace(section, heading, h("p", { class: "empty", id: "no-history" }, "No history yet."));
        return;
      }
      list = h("ol", { class: "timeline", "aria-label": "Events, newest first" });
      replace(section, heading, list);
    }
    for (const event of page.items) list.append(eventItem(event));
    section.querySelector(".more-events")?.remove();
    if (page.next) {
      section.append(h("button", { type: "button", class: "button-quiet more-events", onclick: () => loadEvents(section, page.next) }, "Show older events"));
    }
  }

  return () => { stopped = true; };
}

function attributeValue(name, value) {
  const text = fmt.attributeText(value);
  if (name === "arc_home_location_identity" && /^locations\/[0-9a-f-]{36}$/i.test(text)) {
    // The location's name once known; the identity until then (or if it is gone).
    const filter = new URLSearchParams([["attributes.arc_home_location_identity", text]]);
    const link = h("a", { href: `#/assets?${filter}`, title: `Assets at ${text}` }, text);
    api.call("GET", `/archivist/v2/${text}`)
      .then((answer) => {
        if (answer.body && answer.body.display_name) link.textContent = `${answer.body.display_name} (${text})`;
      })
      .catch(() => {});
    return link;
  }
  return text;
}

function eventItem(event) {
  const when = event.timestamp_declared || event.timestamp_accepted || event.timestamp_committed;
  const what = [event.operation, event.behaviour && `(${event.behaviour})`].filter(Boolean).join(" ") || "Event";
  const principal = event.principal_declared || event.principal_accepted || {};
  const who = principal.display_name || principal.subject || "";
  return h("li", { class: "timeline-event", dataset: { identity: event.identity || "" } },
    h("time", { datetime: when || "" }, fmt.time(when)),
    h("p", { class: "event-title" }, what, who ? h("span", { class: "event-who" }, ` by ${who}`) : null),
    pairs("Asset attributes", event.asset_attributes || {}),
    pairs("Event attributes", event.event_attributes || {}));
}

function pairs(title, object) {
  const names = Object.keys(object).sort();
  if (names.length === 0) return null;
  return h("div", { class: "event-pairs" },
    h("p", { class: "event-pairs-title" }, title),
    h("dl", { class: "attributes compact" },
      names.map((name) => [h("dt", {}, name), h("dd", {}, fmt.attributeText(object[name]))])));
}
