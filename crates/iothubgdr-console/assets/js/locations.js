// Locations: the list (paged, with its total) and a form to create one.

import * as api from "./api.js";
import { h, field, replace, errorBox, pageHeading, announce } from "./dom.js";
import * as fmt from "./format.js";

const PATH = "/archivist/v2/locations";
const PAGE_SIZE = 50;

export function locationsPage(main) {
  let stopped = false;
  let nextToken = null;
  const summary = h("p", { class: "table-summary", id: "locations-summary" }, "Loading…");
  const body = h("tbody");
  const more = h("button", { type: "button", class: "button-quiet", hidden: true }, "Show more");
  const message = h("div");
  let shown = 0;

  async function load(pageToken) {
    try {
      const page = await api.listPage(PATH, "locations", { pageSize: PAGE_SIZE, pageToken, total: true });
      if (stopped) return;
      if (!pageToken) {
        replace(body);
        shown = 0;
      }
      for (const location of page.items) body.append(row(location));
      shown += page.items.length;
      nextToken = page.next;
      more.hidden = !nextToken;
      const total = page.total ?? shown;
      summary.textContent = total ? `${fmt.count(shown)} of ${fmt.count(total)} locations shown` : "No locations yet.";
      summary.dataset.total = String(total);
      replace(message);
    } catch (error) {
      if (stopped || error.status === 401) return;
      replace(message, errorBox(`Cannot load locations: ${error.message}`));
    }
  }
  more.addEventListener("click", () => load(nextToken));

  const nameInput = h("input", { id: "location-name", required: true, maxlength: "1024", autocomplete: "off" });
  const descriptionInput = h("input", { id: "location-description", maxlength: "1024", autocomplete: "off" });
  const latitudeInput = h("input", { id: "location-latitude", type: "number", step: "any", min: "-90", max: "90", inputmode: "decimal" });
  const longitudeInput = h("input", { id: "location-longitude", type: "number", step: "any", min: "-180", max: "180", inputmode: "decimal" });
  const formMessage = h("div");
  const form = h("form", { class: "card", id: "create-location", "aria-labelledby": "create-location-title" },
    h("h2", { id: "create-location-title" }, "Create a location"),
    field("Name", nameInput),
    field("Description", descriptionInput),
    h("div", { class: "pair" }, field("Latitude", latitudeInput), field("Longitude", longitudeInput)),
    formMessage,
    h("button", { type: "submit" }, "Create location"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const bodyJson = { display_name: nameInput.value.trim(), description: descriptionInput.value.trim() };
    if (latitudeInput.value !== "") bodyJson.latitude = Number(latitudeInput.value);
    if (longitudeInput.value !== "") bodyJson.longitude = Number(longitudeInput.value);
    try {
      const answer = await api.call("POST", PATH, { body: bodyJson });
      form.reset();
      replace(formMessage, h("p", { class: "notice", role: "status" }, `Location “${answer.body.display_name}” created.`));
      announce(`Location ${answer.body.display_name} created.`);
      load(null);
    } catch (error) {
      replace(formMessage, errorBox(`Not created: ${error.message}`));
    }
  });

  replace(main,
    pageHeading("Locations"),
    h("div", { class: "split" },
      h("section", { class: "grow", "aria-labelledby": "locations-list-title" },
        h("h2", { id: "locations-list-title", class: "visually-hidden" }, "Location list"),
        summary, message,
        h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Location table (scrolls sideways)" },
          h("table", { class: "locations-table", "aria-describedby": "locations-summary" },
            h("caption", { class: "visually-hidden" }, "Locations, newest first"),
            h("thead", {}, h("tr", {}, ["Name", "Description", "Latitude, longitude", "Assets", "Identity"].map((c) => h("th", { scope: "col" }, c)))),
            body)),
        more),
      form));
  load(null);
  return () => { stopped = true; };
}

function row(location) {
  const position = location.latitude !== undefined && location.longitude !== undefined
    ? `${location.latitude}, ${location.longitude}` : "";
  const filter = new URLSearchParams([["attributes.arc_home_location_identity", location.identity]]);
  return h("tr", { dataset: { identity: location.identity } },
    h("th", { scope: "row" }, location.display_name),
    h("td", {}, location.description || ""),
    h("td", {}, position),
    h("td", {}, h("a", { href: `#/assets?${filter}` }, "Assets here")),
    h("td", {}, h("code", {}, location.identity)));
}
