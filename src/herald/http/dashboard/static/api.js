// The gateway's JSON API, with the bearer token the user typed.
// URLs are relative to the page (/dashboard/), so a gateway mounted under a
// path prefix behind a proxy works unchanged.

const TOKEN_KEY = "herald.dashboard.token";
const BASE = new URL("../", document.baseURI);

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export const token = {
  get() { return sessionStorage.getItem(TOKEN_KEY) || ""; },
  set(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** GET (or another method) a path of the gateway; the JSON answer, or an ApiError. */
export async function api(path, {method = "GET", query = null, signal = undefined} = {}) {
  const url = new URL(path.replace(/^\//, ""), BASE);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  const headers = {accept: "application/json"};
  const secret = token.get();
  if (secret) headers.authorization = `Bearer ${secret}`;
  let answer;
  try {
    answer = await fetch(url, {method, headers, signal, cache: "no-store"});
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", `the gateway does not answer (${error.message})`);
  }
  let body = null;
  try { body = await answer.json(); } catch (error) { body = null; }
  if (!answer.ok) {
    throw new ApiError(answer.status, body && body.error, (body && body.detail) || answer.statusText);
  }
  return body;
}

export const path = {
  seg(value) { return encodeURIComponent(value); },
};
