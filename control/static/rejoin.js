// Coming back as ourselves after the connection was lost (docs/signaling.md,
// "Reconnecting"): the server restarted, or the node holding the meeting died. While we
// are admitted the server keeps us a reconnect credential (`reconnect_credential`); it is
// traded through the page's origin (any node: it routes) for a join token that lets us
// back in without the waiting room, and the socket URL of the node holding the meeting.
// No DOM here.

import { api, ApiError } from './api.js';

// Refusals after which coming back makes no sense whatever we hold.
const FINAL_REFUSALS = new Set(['meeting_ended', 'removed']);

// POST /meetings/{number}/rejoin -> {token, wsUrl}; rejects with the ApiError.
export async function rejoinGrant(number, credential) {
  const reply = await api(`/meetings/${encodeURIComponent(number)}/rejoin`, { method: 'POST', body: { credential } });
  return { token: reply.token, wsUrl: reply.ws_url || null };
}

// The server will never take this credential: join afresh instead (or stop, when final).
export function credentialRefused(err) {
  return err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 429
    && !FINAL_REFUSALS.has(err.code);
}
