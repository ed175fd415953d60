// The one way the dashboard talks to the server: same-origin fetches to
// the public API, authenticated by the session cookie. Changes carry the
// session's CSRF token in X-CSRF-Token.

let csrf = null;
let onSignedOut = () => {};

export function setSession(session) {
  csrf = session ? session.csrf_token : null;
}

export function whenSignedOut(f) {
  onSignedOut = f;
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `The server answered ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

// JSON in, JSON out; `etag: true` also returns the answer's ETag.
export async function api(path, { method = 'GET', body, headers = {}, etag = false } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (method !== 'GET' && method !== 'HEAD' && csrf) h['X-CSRF-Token'] = csrf;
  let payload;
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers: h, body: payload, credentials: 'same-origin', cache: 'no-store' });
  const text = await r.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text };
    }
  }
  if (r.status === 401 && !path.startsWith('/ui/session')) onSignedOut();
  if (!r.ok) throw new ApiError(r.status, data);
  return etag ? { data, etag: r.headers.get('ETag') } : data;
}

export const session = {
  current: () => api('/ui/session'),
  signIn: (token) => api('/ui/session', { method: 'POST', body: { token } }),
  signOut: () => api('/ui/session', { method: 'DELETE' }),
};

// A report from /api/v1/report (the same numbers the API and CLI give).
export function report(params) {
  return api('/api/v1/report?' + new URLSearchParams(params).toString());
}

export function reportCsvUrl(params) {
  return '/api/v1/report?' + new URLSearchParams({ ...params, format: 'csv' }).toString();
}
