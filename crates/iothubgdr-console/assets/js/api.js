// The console's only door to the server: the public API, with the bearer token.
//
// The token is kept in this tab's sessionStorage (so a reload keeps you signed in, and
// closing the tab forgets it), never in local storage, a cookie or a URL. Sign-out removes
// it. A 401 from any call forgets it too and sends the user back to sign in.

const TOKEN_KEY = "iothubgdr-console-token";
const listeners = new Set();

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function signedIn() {
  return Boolean(token());
}

function keep(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** Forgets the token; `reason` is shown on the sign-in page. */
export function signOut(reason) {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: there is nothing to forget.
  }
  for (const listener of listeners) listener(reason || "");
}

export function onSignOut(listener) {
  listeners.add(listener);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && typeof body.message === "string" && body.message) message = body.message;
  } catch {
    // Not the API's error shape: keep the status line.
  }
  return new ApiError(response.status, message);
}

/**
 * Calls the API. `query` is a list of [name, value] pairs; `total` asks for
 * X-Total-Count. Resolves to `{ body, total }`.
 */
export async function call(method, path, { query, body, total } = {}) {
  const current = token();
  if (!current) {
    signOut("");
    throw new ApiError(401, "not signed in");
  }
  const url = new URL(path, window.location.origin);
  for (const [name, value] of query || []) url.searchParams.append(name, value);
  const headers = { Authorization: `Bearer ${current}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (total) headers["X-Request-Total-Count"] = "true";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check that it is running.");
  }
  if (response.status === 401) {
    signOut("Your session has ended: sign in again.");
    throw await errorFrom(response);
  }
  if (!response.ok) throw await errorFrom(response);
  const header = response.headers.get("X-Total-Count");
  const answer = await response.json();
  return { body: answer, total: header === null ? null : Number(header) };
}

/** Signs in with an app registration's client id and secret (the token endpoint). */
export async function signInWithClient(clientId, clientSecret) {
  const form = new URLSearchParams();
  form.set("grant_type", "client_credentials");
  form.set("client_id", clientId);
  form.set("client_secret", clientSecret);
  let response;
  try {
    response = await fetch("/archivist/iam/v1/appidp/token", {
      method: "POST",
      body: form,
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check that it is running.");
  }
  if (!response.ok) {
    throw new ApiError(response.status, response.status === 401
      ? "The client id or secret was not accepted."
      : (await errorFrom(response)).message);
  }
  const answer = await response.json();
  if (!answer || typeof answer.access_token !== "string") {
    throw new ApiError(0, "The token endpoint gave no token.");
  }
  keep(answer.access_token);
}

/**
 * Signs in with a pasted bearer token (as issued by the token endpoint; a pasted
 * `Authorization: Bearer ...` line works too), checked with one cheap call first.
 */
export async function signInWithToken(pasted) {
  const bare = pasted.trim().replace(/^authorization:\s*/i, "").replace(/^bearer\s+/i, "").trim();
  if (!bare) throw new ApiError(0, "Paste a bearer token.");
  let response;
  try {
    response = await fetch("/archivist/v2/locations?page_size=1", {
      headers: { Authorization: `Bearer ${bare}` },
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check that it is running.");
  }
  if (response.status === 401) throw new ApiError(401, "This token was not accepted (expired, or not from this server).");
  if (!response.ok) throw await errorFrom(response);
  keep(bare);
}

/** One page of a list: `{ items, next, total }`. */
export async function listPage(path, key, { filters = [], pageSize = 25, pageToken, total = false } = {}) {
  // A page token carries the whole query, so it travels alone (the API's rule).
  const query = pageToken
    ? [["page_token", pageToken], ["page_size", String(pageSize)]]
    : [...filters, ["page_size", String(pageSize)]];
  const answer = await call("GET", path, { query, total });
  return {
    items: answer.body[key] || [],
    next: answer.body.next_page_token || null,
    total: answer.total,
  };
}

/** How many items match `filters`: one page of one item with X-Total-Count. */
export async function countOf(path, key, filters) {
  const page = await listPage(path, key, { filters, pageSize: 1, total: true });
  return page.total ?? page.items.length;
}
