// The fleet summary chart: per hub, devices by type and by status, as stacked bars.
//
// Drawn as SVG by hand (about a hundred lines) rather than with a chart library: the
// libraries we could vendor draw on <canvas> (nothing for a screen reader) or set inline
// styles that our Content-Security-Policy forbids, and this chart is two stacked bars per
// hub. SVG scales with the page, its text stays text, and colours come from the stylesheet.

import { svg } from "./dom.js";
import { count } from "./format.js";

const WIDTH = 420;
const LABEL_WIDTH = 72;
const BAR_HEIGHT = 22;
const ROW_GAP = 8;
const HUB_GAP = 30;

/**
 * `hubs`: [{ hub, total, byType: [{label, value, kind}], byStatus: [...] }]. Returns an
 * <svg role="img"> whose label sums it up; the same numbers are in a table beside it.
 */
export function fleetChart(hubs, titleId) {
  const rows = hubs.length * (2 * BAR_HEIGHT + ROW_GAP + HUB_GAP) + 10;
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${rows}`,
    class: "fleet-chart",
    role: "img",
    "aria-labelledby": titleId,
    preserveAspectRatio: "xMinYMin meet",
  });
  const largest = Math.max(1, ...hubs.map((hub) => hub.total));
  const scale = (WIDTH - LABEL_WIDTH - 56) / largest;
  let y = 4;
  for (const hub of hubs) {
    chart.append(svg("text", { x: 0, y: y + 14, class: "chart-hub" }, hub.hub));
    y += 22;
    for (const [label, segments] of [["by type", hub.byType], ["by status", hub.byStatus]]) {
      chart.append(svg("text", { x: 0, y: y + BAR_HEIGHT / 2 + 5, class: "chart-label" }, label));
      let x = LABEL_WIDTH;
      for (const segment of segments) {
        if (segment.value <= 0) continue;
        const width = Math.max(2, segment.value * scale);
        chart.append(svg("rect", {
          x, y, width, height: BAR_HEIGHT, class: `segment segment-${segment.kind}`,
        }, svg("title", {}, `${hub.hub}, ${segment.label}: ${count(segment.value)}`)));
        if (width > 44) {
          chart.append(svg("text", { x: x + 6, y: y + BAR_HEIGHT / 2 + 5, class: "chart-value" }, count(segment.value)));
        }
        x += width;
      }
      chart.append(svg("text", { x: x + 6, y: y + BAR_HEIGHT / 2 + 5, class: "chart-total" }, count(hub.total)));
      y += BAR_HEIGHT + ROW_GAP;
    }
    y += HUB_GAP - ROW_GAP;
  }
  return chart;
}

/** The legend: which colour is which kind. */
export function legend(kinds) {
  const items = kinds.map(({ kind, label }) => {
    const swatch = svg("svg", { viewBox: "0 0 12 12", width: 12, height: 12, "aria-hidden": "true" },
      svg("rect", { width: 12, height: 12, class: `segment segment-${kind}` }));
    const item = document.createElement("li");
    item.append(swatch, document.createTextNode(` ${label}`));
    return item;
  });
  const list = document.createElement("ul");
  list.className = "legend";
  list.append(...items);
  return list;
}
