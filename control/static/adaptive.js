// Adaptive media in the web client (issue 11, docs/signaling.md "Adaptive media"):
// - what the server decides about what we receive: `track_paused`, `track_resumed` and
//   `track_quality` per remote video track, kept in TrackStates for the tiles' quality
//   indicator (bars) and their paused look;
// - what it decides about what we send: `publish_layers` names the simulcast encodings
//   somebody takes; PublishLayers keeps only those active (RTCRtpSender.setParameters),
//   never none (the lowest stays), and applies it again after each renegotiation.
// No DOM here: tiles.js draws, session.js routes the messages.

// Why a track is paused, in words for the tile.
export const PAUSE_REASONS = {
  bandwidth: 'bandwidth',
  last_n: 'not among the last speakers',
};

// The `active` flag of each encoding (rids lowest first) for the wanted rids: those named,
// and the lowest when none of them is (a sender with every encoding off sends nothing and
// would have to start over).
export function activeFlags(rids, wanted) {
  const keep = new Set(wanted);
  const flags = rids.map((rid) => keep.has(rid));
  if (!flags.includes(true) && flags.length > 0) flags[0] = true;
  return flags;
}

export class PublishLayers {
  // `senderOf(trackId)`: the RTCRtpSender publishing our track `trackId`, or null.
  constructor(senderOf) {
    this.senderOf = senderOf;
    this.wanted = new Map();   // track_id -> [rid, ...] the server last named
    this.chain = Promise.resolve();
    this.applied = 0;          // setParameters calls that changed something (tests, debugging)
  }

  // A new publish connection: its tracks have new ids; what the server said is void.
  reset() {
    this.wanted = new Map();
  }

  onMessage(msg) {
    if (typeof msg.track_id !== 'string' || !Array.isArray(msg.active)) return this.chain;
    this.wanted.set(msg.track_id, msg.active.filter((rid) => typeof rid === 'string'));
    return this.apply();
  }

  // Applies what the server wants to every sender (idempotent); one at a time, since
  // getParameters/setParameters of one sender must not interleave.
  apply() {
    this.chain = this.chain.then(() => this.applyAll()).catch(() => {});
    return this.chain;
  }

  async applyAll() {
    for (const [trackId, rids] of this.wanted) {
      const sender = this.senderOf(trackId);
      if (sender) await this.applyTo(sender, rids);
    }
  }

  async applyTo(sender, rids) {
    const params = sender.getParameters();
    const encodings = params.encodings || [];
    if (encodings.length < 2 || !encodings.every((e) => e.rid)) return;   // one layer: nothing to pause
    const flags = activeFlags(encodings.map((e) => e.rid), rids);
    if (flags.every((active, i) => encodings[i].active === active)) return;
    encodings.forEach((e, i) => { e.active = flags[i]; });
    await sender.setParameters(params);
    this.applied += 1;
  }
}

// What the server said of each remote video track we receive:
// track_id -> {paused: reason | null, spatial, layers, height}.
export class TrackStates {
  constructor() {
    this.states = new Map();
  }

  reset() {
    this.states = new Map();
  }

  get(trackId) {
    return this.states.get(trackId) || null;
  }

  // True when the message changed what a tile shows.
  onMessage(msg) {
    if (typeof msg.track_id !== 'string') return false;
    const state = this.states.get(msg.track_id) || { paused: null, spatial: -1, layers: 1, height: 0 };
    if (msg.type === 'track_paused') state.paused = typeof msg.reason === 'string' ? msg.reason : 'bandwidth';
    else if (msg.type === 'track_resumed') state.paused = null;
    else if (msg.type === 'track_quality') {
      state.spatial = Number.isInteger(msg.spatial) ? msg.spatial : -1;
      state.layers = Number.isInteger(msg.layers) && msg.layers > 0 ? msg.layers : 1;
      state.height = Number.isInteger(msg.height) ? msg.height : 0;
      state.fps = typeof msg.fps === 'number' && msg.fps > 0 ? msg.fps : 0;
      // "hidden" is our own doing: only the server's pauses show as paused.
      state.paused = msg.paused in PAUSE_REASONS ? msg.paused : (msg.paused === 'hidden' ? state.paused : null);
    } else return false;
    this.states.set(msg.track_id, state);
    return true;
  }

  forget(trackIds) {
    for (const trackId of [...this.states.keys()]) if (!trackIds.has(trackId)) this.states.delete(trackId);
  }
}

// The tile's indicator for a track state: {bars: 0..3, label} (null: nothing known yet).
// Top layer (or a single-layer track) = 3 bars, lower layers fewer, paused = none.
export function qualityOf(state) {
  if (!state) return null;
  if (state.paused) return { bars: 0, label: `paused: ${PAUSE_REASONS[state.paused] || state.paused}` };
  if (state.spatial < 0) return null;   // hidden by us: no news
  const bars = Math.max(1, Math.round(((state.spatial + 1) * 3) / Math.max(1, state.layers)));
  const size = state.height > 0 ? `${state.height}p, ` : '';
  const rate = state.fps > 0 ? `${Math.round(state.fps * 10) / 10} fps, ` : '';
  return { bars, label: `${size}${rate}layer ${state.spatial + 1} of ${state.layers}` };
}
