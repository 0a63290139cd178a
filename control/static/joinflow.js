// How the meeting page gets into a meeting (docs/control-plane-reference.md): a participant asks
// with the Meeting ID and passcode or with the signed link token; a host arrives with the
// join token the dashboard's Start returned. Both can ask again for a fresh token when a
// reconnect needs one. No DOM here.

import { api, ApiError, meetingDigits, hostSession, hostJoin, saveHostJoin } from './api.js';

// What the address says: /m/{number}[?t=link&name=...] or /join.
export function readLocation(loc = window.location) {
  const params = new URLSearchParams(loc.search);
  const match = /^\/m\/([^/]+)\/?$/.exec(loc.pathname);
  const raw = match ? decodeURIComponent(match[1]) : null;
  return {
    number: raw ? meetingDigits(raw) : null,
    rawNumber: raw,
    linkToken: params.get('t') || null,
    name: params.get('name'),
    isJoinPage: /^\/join\/?$/.test(loc.pathname),
  };
}

// Why a join was refused, in words for the person at the form.
export function joinErrorText(err) {
  if (!(err instanceof ApiError)) return (err && err.message) || 'Something went wrong.';
  if (err.status === 429) {
    const wait = err.retryAfter ?? 60;
    return `Too many attempts. Try again in ${wait} second${wait === 1 ? '' : 's'}.`;
  }
  switch (err.code) {
    case 'invalid_credentials': return 'The Meeting ID or passcode is not right. Check your invitation.';
    case 'invalid_link': case 'invalid_link_token': case 'invalid_token':
      return 'This invitation link is not valid. Ask the host for a new one, or enter the Meeting ID and passcode.';
    case 'meeting_locked': return 'The host has locked this meeting, so nobody new can join.';
    case 'meeting_full': return err.message && /\d/.test(err.message) ? err.message : 'This meeting is full.';
    case 'removed': return 'The host removed you from this meeting, so you cannot join it again.';
    case 'meeting_ended': case 'meeting_removed': return 'This meeting has ended.';
    case 'network': return err.message;
    default: return err.message || 'The server refused to let you join.';
  }
}

const LAST_JOIN_PREFIX = 'conclave.lastJoin.';

function lastJoinToken(number) {
  try { return sessionStorage.getItem(LAST_JOIN_PREFIX + number); } catch (e) { return null; }
}

function rememberJoinToken(number, token) {
  try { if (token) sessionStorage.setItem(LAST_JOIN_PREFIX + number, token); } catch (e) { /* storage off */ }
}

// A participant's way in. `get({fresh})` is what MeetingSession calls on reconnects.
export class ParticipantCredentials {
  constructor(number, { name, passcode = null, linkToken = null }) {
    this.number = number;
    this.name = name;
    this.passcode = passcode;
    this.linkToken = linkToken;
  }

  // POST /meetings/{number}/join → {token, wsUrl, participantId, status, title}.
  async request() {
    const body = { name: this.name };
    if (this.linkToken) body.link_token = this.linkToken;
    else body.passcode = this.passcode || '';
    // The token of our last join of this meeting (in this tab) tells the server who is
    // coming back: someone the host removed is refused.
    const previous = lastJoinToken(this.number);
    if (previous) body.token = previous;
    const reply = await api(`/meetings/${this.number}/join`, { method: 'POST', body });
    rememberJoinToken(this.number, reply.token);
    return {
      token: reply.token,
      wsUrl: reply.ws_url || null,
      participantId: reply.participant_id || null,
      status: reply.status || null,
      title: (reply.meeting && reply.meeting.title) || '',
      mayPublish: reply.may_publish !== false,   // false: a webinar's attendee (no camera, no microphone)
    };
  }

  async get() {
    return this.request();
  }
}

// The host's way in: the join token of the dashboard's Start, and POST /start again (with
// the host's session token) for a fresh one, but only while the meeting is still live:
// a reconnect must never restart a meeting that ended meanwhile.
export class HostCredentials {
  constructor(number, grant) {
    this.number = number;
    this.grant = grant;   // {token, wsUrl} or null
  }

  static fromStorage(number) {
    const saved = hostJoin(number);
    return saved && saved.token ? new HostCredentials(number, saved) : null;
  }

  async get({ fresh = false } = {}) {
    if (!fresh && this.grant) return this.grant;
    const signedIn = hostSession();
    if (!signedIn) throw new ApiError(401, 'unauthorized', 'Sign in again to return to your meeting.');
    const meeting = await api(`/meetings/${this.number}`, { token: signedIn.token });
    if (meeting && meeting.status && meeting.status !== 'live') {
      throw new ApiError(409, 'meeting_ended', 'The meeting has ended.');
    }
    this.grant = await startMeeting(this.number, signedIn.token);
    return this.grant;
  }
}

// POST /meetings/{number}/start; remembers the host's join for the meeting page.
export async function startMeeting(number, sessionToken) {
  const digits = meetingDigits(number) || number;
  const reply = await api(`/meetings/${digits}/start`, { method: 'POST', token: sessionToken });
  const grant = { token: reply.host_token, wsUrl: reply.ws_url || null };
  saveHostJoin(digits, grant);
  return grant;
}
