// The console's shell: which page the address names (`#/imports`, `#/assets?...`,
// `#/assets/<uuid>`, `#/locations`), sign-in and sign-out, and focus on page changes.
// The address never holds a token or secret: only the page and its filters.

import * as api from "./api.js";
import { replace } from "./dom.js";
import { signInPage } from "./signin.js";
import { importsPage } from "./imports.js";
import { assetsPage } from "./assets.js";
import { assetPage } from "./asset.js";
import { locationsPage } from "./locations.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");
let leaveCurrent = () => {};
let signOutReason = "";

function parseRoute() {
  const raw = window.location.hash.replace(/^#/, "");
  if (!raw.startsWith("/")) return null;
  const [path, query = ""] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

function render() {
  const route = parseRoute();
  if (route === null && window.location.hash === "#main") return; // the skip link
  leaveCurrent();
  leaveCurrent = () => {};
  const signedIn = api.signedIn();
  nav.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  if (!signedIn) {
    document.title = "Sign in · iothubgdr console";
    leaveCurrent = signInPage(main, signOutReason, () => {
      signOutReason = "";
      if (!parseRoute() || parseRoute().parts.length === 0) {
        window.location.hash = "#/imports";
      } else {
        render();
      }
    }) || (() => {});
    return;
  }
  const parts = route ? route.parts : [];
  const params = route ? route.params : new URLSearchParams();
  let section = parts[0] || "imports";
  let page;
  if (section === "assets" && parts[1]) {
    page = () => assetPage(main, parts[1]);
  } else if (section === "assets") {
    page = () => assetsPage(main, params);
  } else if (section === "locations") {
    page = () => locationsPage(main, params);
  } else {
    section = "imports";
    page = () => importsPage(main);
  }
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  replace(main);
  leaveCurrent = page() || (() => {});
}

// Moves the focus to the new page's heading (once the page has drawn it), so keyboard
// and screen-reader users start at the top of what changed.
const focusObserver = new MutationObserver(() => {
  const heading = document.getElementById("page-title");
  if (heading && heading.dataset.focused !== "yes") {
    heading.dataset.focused = "yes";
    document.title = `${heading.textContent} · iothubgdr console`;
    if (document.activeElement === document.body || !main.contains(document.activeElement)) {
      heading.focus();
    }
  }
});
focusObserver.observe(main, { childList: true, subtree: true });

api.onSignOut((reason) => {
  signOutReason = reason;
  render();
});

signOutButton.addEventListener("click", () => {
  api.signOut("You are signed out. The token is forgotten.");
  window.location.hash = "#/";
});

document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener("hashchange", render);
render();
