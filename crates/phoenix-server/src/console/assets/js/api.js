/*
 * The Admin API client: fetch with the session cookies and the CSRF header on writes, one shared
 * session refresh on 401, and failures as ApiError carrying the server's error envelope.
 */
import { go } from './router.js';
import { state } from './state.js';

export class ApiError extends Error {
  constructor(status, code, message) { super(message); Object.assign(this, { status, code }); }
}

function csrfToken() {
  for (const part of document.cookie.split(';')) {
    const [k, ...rest] = part.trim().split('=');
    if (k === 'phoenix-csrf-token') return decodeURIComponent(rest.join('='));
  }
  return null;
}

export async function rawFetch(method, path, body) {
  const headers = { Accept: 'application/json' };
  const token = method !== 'GET' ? csrfToken() : null;
  if (token) headers['X-CSRF-Token'] = token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  try {
    return await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'NETWORK', 'Cannot reach the Phoenix server. Check that it is running and try again.');
  }
}

export async function parseResponse(res) {
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (res.ok) return data;
  const e = (data && data.error) || {};
  const fallback = res.status === 403 ? 'You do not have permission to do that.' : `Request failed (HTTP ${res.status}).`;
  throw new ApiError(res.status, e.code || `HTTP_${res.status}`, e.message || fallback);
}

let refreshing = null;
/**
 * Rotates the session once, shared by every caller that hit a 401 at the same time, and by every tab:
 * a refresh token works once, so two tabs refreshing with the same one would look like a stolen token
 * and end the session. Tabs take turns under a Web Lock; a tab that waited finds the CSRF cookie
 * changed (each refresh sets a new one) and uses the session the other tab already renewed.
 */
function refreshSession() {
  refreshing = refreshing || (async () => {
    const before = csrfToken();
    const renew = async () => {
      if (csrfToken() !== before) return true;
      try { return (await rawFetch('POST', '/auth/refresh', {})).ok; } catch { return false; }
    };
    try {
      return navigator.locks ? await navigator.locks.request('phoenix-session-refresh', renew) : await renew();
    } catch { return false; }
  })().finally(() => { refreshing = null; });
  return refreshing;
}

export async function api(method, path, body, opts = {}) {
  let res = await rawFetch(method, path, body);
  if (res.status === 401 && state.authEnabled) {
    if (await refreshSession()) res = await rawFetch(method, path, body);
    if (res.status === 401) {
      if (!opts.noRedirect) sessionExpired();
      throw new ApiError(401, 'UNAUTHORIZED', 'Your session has expired. Please sign in again.');
    }
  }
  return parseResponse(res);
}

function sessionExpired() {
  if (!state.user) return;
  if (location.hash && location.hash !== '#/login') state.next = location.hash;
  Object.assign(state, { user: null, shell: null, loginNotice: 'Your session has expired. Please sign in again.' });
  go('#/login');
}
