// Connection quality in the web client (issue 14, item 1; docs/signaling.md "Connection
// quality"):
// - the server's `connection_quality` events (each participant's level: excellent, good
//   or poor, with its MOS-like score), kept in ConnectionQuality for the tiles' indicator;
// - what only the browser knows: how long the video it receives froze (inbound-rtp
//   `totalFreezesDuration`, `freezeCount`, summed over its streams), reported to the
//   server as `media_stats` every FREEZE_REPORT_INTERVAL_MS while joined (the server
//   scores the share of each interval spent frozen).
// No DOM here: tiles.js draws, session.js routes the messages.

export const LEVEL_LABELS = { excellent: 'Excellent', good: 'Good', poor: 'Poor' };
export const FREEZE_REPORT_INTERVAL_MS = 5000;
const HISTORY_LIMIT = 200;   // events kept for tests and people debugging a call

export class ConnectionQuality {
  constructor() {
    this.levels = new Map();   // participant_id -> {quality, score}
    this.history = [];         // [{participant_id, quality, score}] as received, the newest last
  }

  reset() {
    this.levels = new Map();
  }

  get(participantId) {
    return this.levels.get(participantId) || null;
  }

  forget(participantId) {
    this.levels.delete(participantId);
  }

  // True when the message changed a level someone is shown.
  onMessage(msg) {
    if (!Array.isArray(msg.participants)) return false;
    let changed = false;
    for (const entry of msg.participants) {
      if (!entry || typeof entry.participant_id !== 'string' || !(entry.quality in LEVEL_LABELS)) continue;
      const score = typeof entry.score === 'number' ? entry.score : 0;
      const before = this.levels.get(entry.participant_id);
      this.levels.set(entry.participant_id, { quality: entry.quality, score });
      this.history.push({ participant_id: entry.participant_id, quality: entry.quality, score });
      if (this.history.length > HISTORY_LIMIT) this.history.shift();
      if (!before || before.quality !== entry.quality) changed = true;
    }
    return changed;
  }
}

// The tile's connection indicator for a level (null: not scored yet).
export function connectionOf(level) {
  if (!level || !(level.quality in LEVEL_LABELS)) return null;
  return { quality: level.quality, label: `Connection: ${LEVEL_LABELS[level.quality]}` };
}

// {count, seconds}: freezes of every video stream `pc` receives, so far (0 without one).
export async function freezeTotals(pc) {
  const totals = { count: 0, seconds: 0 };
  if (!pc) return totals;
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    totals.count += s.freezeCount ?? 0;
    totals.seconds += s.totalFreezesDuration ?? 0;
  });
  return totals;
}

// Sends `media_stats` with the running freeze totals of `pcOf()` every interval.
export class FreezeReporter {
  constructor(send, pcOf, intervalMs = FREEZE_REPORT_INTERVAL_MS) {
    this.send = send;
    this.pcOf = pcOf;
    this.intervalMs = intervalMs;
    this.timer = null;
    this.sent = 0;
  }

  start() {
    this.stop();
    this.timer = setInterval(() => { this.report().catch(() => {}); }, this.intervalMs);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async report() {
    const pc = this.pcOf();
    if (!pc) return;
    const totals = await freezeTotals(pc);
    const message = {
      type: 'media_stats',
      freeze_count: Math.min(1000000, Math.max(0, Math.round(totals.count))),
      freeze_seconds: Math.min(604800, Math.max(0, Math.round(totals.seconds * 1000) / 1000)),
    };
    if (this.send(message)) this.sent += 1;
  }
}
