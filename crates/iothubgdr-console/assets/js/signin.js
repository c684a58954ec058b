// Sign in with an app registration (client id + secret through the token endpoint) or a
// pasted bearer token. The secret field is cleared as soon as it was sent.

import * as api from "./api.js";
import { h, field, replace, errorBox, pageHeading } from "./dom.js";

export function signInPage(main, reason, done) {
  const message = h("div", { id: "sign-in-message" });
  if (reason) replace(message, h("p", { class: "notice", role: "status" }, reason));

  const clientId = h("input", { name: "client_id", autocomplete: "username", required: true, spellcheck: "false", id: "client-id" });
  const clientSecret = h("input", { name: "client_secret", type: "password", autocomplete: "current-password", required: true, id: "client-secret" });
  const clientForm = h("form", { class: "card", id: "sign-in-client", "aria-labelledby": "sign-in-client-title" },
    h("h2", { id: "sign-in-client-title" }, "With an app registration"),
    field("Client id", clientId),
    field("Client secret", clientSecret, "Shown once by iothubgdr apps create. Used once to get a token, then forgotten."),
    h("button", { type: "submit" }, "Sign in"));

  const pasted = h("textarea", { name: "token", rows: "3", autocomplete: "off", spellcheck: "false", id: "bearer-token" });
  const tokenForm = h("form", { class: "card", id: "sign-in-token", "aria-labelledby": "sign-in-token-title" },
    h("h2", { id: "sign-in-token-title" }, "With a bearer token"),
    field("Bearer token", pasted, "For example the contents of the demo's BEARER_TOKEN_FILE."),
    h("button", { type: "submit" }, "Sign in with token"));

  async function attempt(form, action) {
    const button = form.querySelector("button");
    button.disabled = true;
    replace(message);
    try {
      await action();
      done();
    } catch (error) {
      replace(message, errorBox(error.message));
    } finally {
      button.disabled = false;
    }
  }

  clientForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = clientId.value.trim();
    const secret = clientSecret.value;
    clientSecret.value = "";
    attempt(clientForm, () => api.signInWithClient(id, secret));
  });
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = pasted.value;
    pasted.value = "";
    attempt(tokenForm, () => api.signInWithToken(value));
  });

  replace(main,
    pageHeading("Sign in"),
    h("p", { class: "lead" }, "The console uses the same API as curl and the command line client. Your token stays in this browser tab only and is forgotten when you sign out or close the tab."),
    message,
    h("div", { class: "columns" }, clientForm, tokenForm));
  return () => {};
}
