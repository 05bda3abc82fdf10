// The admin API, as the CLI calls it, with the session cookie instead of a
// bearer token. Every change carries the session's CSRF token, which lives
// only in this module's memory (the cookie itself is HttpOnly).

let csrfToken = null;
let signedOut = () => {};

export class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

export function useSession(session) {
  csrfToken = session ? session.csrf_token : null;
}

// Called when the server says the session is over (expired, signed out
// elsewhere, credential revoked).
export function onSignedOut(callback) {
  signedOut = callback;
}

// `path` under the origin; `query`: an object, empty values left out.
export function url(path, query = {}) {
  const target = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== '') target.searchParams.set(name, value);
  }
  return target.pathname + target.search;
}

export async function call(method, path, { query = {}, body, csv = false } = {}) {
  const headers = { Accept: csv ? 'text/csv' : 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken || '';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => null);
    const message = answer?.error?.message || `${response.status} ${response.statusText}`;
    if (response.status === 401 && !path.startsWith('/ui/session')) {
      signedOut('Your session has ended: sign in again.');
    }
    throw new ApiError(response.status, message, answer?.error?.param ?? null);
  }
  if (response.status === 204) return null;
  return csv ? response.text() : response.json();
}

export const get = (path, query) => call('GET', path, { query });
export const post = (path, body) => call('POST', path, { body: body ?? {} });
export const patch = (path, body) => call('PATCH', path, { body });

// Path segments are encoded, as the CLI does, so a name stays one segment.
export function path(...segments) {
  return `/admin/v1/${segments.map(encodeURIComponent).join('/')}`;
}

export async function signIn(credential) {
  const session = await call('POST', '/ui/session', { body: { credential } });
  useSession(session);
  return session;
}

export async function currentSession() {
  const session = await call('GET', '/ui/session');
  useSession(session);
  return session;
}

export async function signOut() {
  await call('DELETE', '/ui/session');
  useSession(null);
}
