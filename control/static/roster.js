// Who is in the meeting (docs/signaling.md, "Participants"): the server sends joins,
// leaves and updates in batches (`participants_changed`: {joined, updated, left}, any of
// them absent when empty), and a large meeting's list after `joined` in the same shape.
// Pure: applies one batch to a Map (participant_id -> participant) of the others.

// Returns the ids that left (for what the caller keeps per participant) and whether
// anything changed. Our own entry is never added (the server does not send it; a stale
// one from before a reconnect would otherwise show us twice).
export function applyParticipantsChanged(participants, msg, selfId) {
  let changed = false;
  for (const p of [...list(msg.joined), ...list(msg.updated)]) {
    if (!p || typeof p.participant_id !== 'string' || p.participant_id === selfId) continue;
    participants.set(p.participant_id, p);
    changed = true;
  }
  const left = [];
  for (const id of list(msg.left)) {
    if (typeof id === 'string' && participants.delete(id)) {
      left.push(id);
      changed = true;
    }
  }
  return { changed, left };
}

function list(value) {
  return Array.isArray(value) ? value : [];
}
