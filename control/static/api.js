// The REST API (/api/v1, docs/control-plane-reference.md) as the pages use it, the host's sign-in
// kept in sessionStorage, and the Meeting ID helpers. No DOM here.

const HOST_KEY = 'conclave.host';              // {token, host} of the signed-in host (this tab)
const SIGNOUT_KEY = 'conclave.signoutReason';  // why the last session ended (shown at sign-in)
const HOST_JOIN_PREFIX = 'conclave.hostJoin.'; // + meeting digits: the host's join from Start

// The server's messages are lower-case phrases; on screen they start a sentence.
function sentence(text) {
  const value = String(text || '').trim();
  return value ? value[0].toUpperCase() + value.slice(1) : value;
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(sentence(message || code || `HTTP ${status}`));
    this.status = status;
    this.code = code || '';
    this.retryAfter = retryAfter;   // seconds, from a 429's Retry-After
  }
}

// fetch() a JSON endpoint. Resolves with the parsed body (null for 204); rejects with
// ApiError (status 0 when the server could not be reached).
export async function api(path, { method = 'GET', body, token } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store',
    });
  } catch (err) {
    throw new ApiError(0, 'network', 'Could not reach the server. Check your connection.');
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = null; }
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const retry = Number.parseInt(response.headers.get('Retry-After') || '', 10);
    throw new ApiError(response.status, error.code || '', error.message || `${response.status} ${response.statusText}`,
      Number.isFinite(retry) ? retry : null);
  }
  return data;
}

// ------------------------------------------------------------------ Meeting IDs

// "123-4567-8901" / "12345678901" / " 123 4567 8901 " -> "12345678901"; null if not 11 digits.
export function meetingDigits(text) {
  const digits = String(text ?? '').replace(/[\s-]/g, '');
  return /^\d{11}$/.test(digits) ? digits : null;
}

// 11 digits shown as XXX-XXXX-XXXX; anything else is returned unchanged.
export function formatMeetingNumber(text) {
  const digits = meetingDigits(text);
  return digits ? `${digits.slice(0, 3)}-${digits.slice(3, 7)}-${digits.slice(7)}` : String(text ?? '');
}

// What someone pasted into a "Meeting ID or link" box: {number, linkToken} or null.
// Accepts a Meeting ID with or without dashes, or any link whose path is /m/<number>.
export function parseMeetingInput(text, origin = window.location.origin) {
  const value = String(text ?? '').trim();
  if (!value) return null;
  const digits = meetingDigits(value);
  if (digits) return { number: digits, linkToken: null };
  let url;
  try { url = new URL(value, origin); } catch (e) { return null; }
  const match = /\/m\/([\d-]+)\/?$/.exec(url.pathname);
  const number = match ? meetingDigits(match[1]) : null;
  if (!number) return null;
  return { number, linkToken: url.searchParams.get('t') || null };
}

// The meeting page of a number, keeping a link token when there is one.
export function meetingPath(number, linkToken = null) {
  const path = `/m/${encodeURIComponent(meetingDigits(number) || number)}`;
  return linkToken ? `${path}?t=${encodeURIComponent(linkToken)}` : path;
}

// A passcode to prefill the schedule form with: 8 characters a person can read out
// without confusion (no 0/O, 1/l/I), drawn with the browser's CSPRNG.
export function generatePasscode(length = 8) {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
}

// A JWT's claims, read without checking the signature (the server does that): only to
// know our own role and when to ask for a fresh token. {} when it is not a JWT.
export function tokenClaims(token) {
  try {
    const payload = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(payload.padEnd(payload.length + ((4 - payload.length % 4) % 4), '='));
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    return claims && typeof claims === 'object' ? claims : {};
  } catch (e) {
    return {};
  }
}

// Seconds left before a JWT's `exp` (Infinity when it has none).
export function tokenSecondsLeft(token, now = Date.now()) {
  const { exp } = tokenClaims(token);
  return typeof exp === 'number' ? exp - now / 1000 : Infinity;
}

// ------------------------------------------------------------------ the host's sign-in

function readJson(storage, key) {
  try {
    const raw = storage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch (e) {
    return null;
  }
}

function writeJson(storage, key, value) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, JSON.stringify(value));
  } catch (e) { /* storage disabled: the session lasts as long as the page */ }
}

// {token, host: {id, email, name, ...}} or null.
export function hostSession() {
  const saved = readJson(sessionStorage, HOST_KEY);
  return saved && typeof saved.token === 'string' ? saved : null;
}

export function saveHostSession(token, host) {
  writeJson(sessionStorage, HOST_KEY, { token, host });
  writeJson(sessionStorage, SIGNOUT_KEY, null);
}

// Forgets the sign-in; `reason` (text) is shown on the sign-in page next time.
export function clearHostSession(reason = null) {
  writeJson(sessionStorage, HOST_KEY, null);
  writeJson(sessionStorage, SIGNOUT_KEY, reason);
  for (let i = sessionStorage.length - 1; i >= 0; i--) {
    const key = sessionStorage.key(i);
    if (key && key.startsWith(HOST_JOIN_PREFIX)) sessionStorage.removeItem(key);
  }
}

// The reason saved by clearHostSession, once.
export function takeSignoutReason() {
  const reason = readJson(sessionStorage, SIGNOUT_KEY);
  writeJson(sessionStorage, SIGNOUT_KEY, null);
  return typeof reason === 'string' ? reason : null;
}

// What a refused host credential (or a `session_ended` reason) means to its holder.
export function sessionEndedText(reasonOrError) {
  const code = typeof reasonOrError === 'string' ? reasonOrError : (reasonOrError && reasonOrError.code) || '';
  const message = typeof reasonOrError === 'string' ? '' : (reasonOrError && reasonOrError.message) || '';
  const said = `${code} ${message}`;
  if (/signed[_ ]in[_ ]elsewhere/i.test(said)) {
    return 'You were signed out because your account signed in somewhere else.';
  }
  if (/password[_ ]changed/i.test(said)) return 'You were signed out because your password was changed.';
  if (/suspend/i.test(said)) return 'Your account has been suspended.';
  if (/deleted/i.test(said)) return 'Your account no longer exists.';
  return 'Your session has ended. Please sign in again.';
}

// A refusal that means the host's sign-in is over (not just this one request).
export function isSignedOutError(err) {
  return err instanceof ApiError && (err.status === 401 || (err.status === 403 && /suspended/.test(err.code)));
}

// The host's join credential handed from the dashboard's Start to the meeting page.
export function saveHostJoin(number, join) {
  writeJson(sessionStorage, HOST_JOIN_PREFIX + meetingDigits(number), join);
}

export function hostJoin(number) {
  return readJson(sessionStorage, HOST_JOIN_PREFIX + meetingDigits(number));
}

export function forgetHostJoin(number) {
  writeJson(sessionStorage, HOST_JOIN_PREFIX + meetingDigits(number), null);
}
