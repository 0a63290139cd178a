// One participant's connection to a meeting: the signaling WebSocket and the two peer
// connections of docs/signaling.md (publish: we offer; subscribe: the server offers).
// No DOM here: the page listens to the events this object dispatches.
//
// The socket is opened with a join token (docs/control-plane-reference.md) that `credentials.get()`
// supplies: the page decides how to get one (passcode, link token, the host's Start).
//
// Events (CustomEvent, details in brackets):
//   state         [state, reason]  idle | joining | waiting | joined | reconnecting | left
//   participants  []               someone joined, left or changed (names, mute flags)
//   media         []               remote tracks came, went or changed (after each offer)
//   local         []               local media changed (mute, camera, screen share)
//   chat          [message]        a chat message arrived (already in `chat`, in seq order)
//   waitingroom   []               (host) the waiting-room list changed
//   notice        [text, level]    something the user should see briefly (errors from the server)
//   recording     [before, state, consentPending]  recording/transcription or consent changed
//                                  (`recording`, a RecordingControl, holds the state)
//   connection    []               someone's connection quality level changed (`connectionQuality`)
//   stage         []               our webinar role, our hand, or (host) the speakers and hands changed

import { ApiError, tokenClaims, tokenSecondsLeft } from './api.js';
import { RecordingControl } from './recording.js';
import { PublishLayers, TrackStates } from './adaptive.js';
import { ConnectionQuality, FreezeReporter } from './quality.js';
import { rtcConfiguration } from './icepolicy.js';
import { applyParticipantsChanged } from './roster.js';
import { credentialRefused, rejoinGrant } from './rejoin.js';
import { StageState } from './stage.js';
import {
  ANNOUNCEMENT_SOURCE, announcementStats, inboundBytes, publishEncodingStats, publishStats, subscribeStats,
} from './mediastats.js';

const JOIN_TIMEOUT_MS = 15000;
const REQUEST_TIMEOUT_MS = 15000;
const PING_INTERVAL_MS = 20000;
const SILENCE_LIMIT_MS = 50000;     // no frame at all for this long: the socket is dead
const BACKOFF_FIRST_MS = 400;
const BACKOFF_MAX_MS = 4000;       // a restarted server is back in seconds: look often
// The server closes an old socket with this code when the same participant joined again
// on a new one (another tab): coming back would only push that one out in turn.
const REPLACED_CLOSE_CODE = 4001;
// Join errors worth retrying; any other code is final (full meeting, bad name, ...).
const TRANSIENT_JOIN_ERRORS = new Set(['unavailable', 'media_error', 'internal', 'rate_limited']);
// Join refusals that mean the same as the server's final messages.
const JOIN_REFUSALS = { removed: 'removed', denied: 'denied', meeting_ended: 'meeting_ended', session_ended: 'signed_out' };
// A join token this close to its expiry is not used for a new socket: get a fresh one.
const TOKEN_MARGIN_S = 20;
// Server messages that end the session for good, and how the page should word it.
const FINAL_MESSAGES = {
  denied: 'denied',
  removed: 'removed',
  meeting_ended: 'meeting_ended',
  session_ended: 'signed_out',
};

export const CAMERA_CONSTRAINTS = {
  width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24, max: 30 },
};
// With simulcast (`joined` says the server takes it) the camera goes out as three
// encodings, lowest first (the server takes the a=simulcast order as low to high):
// 320x180, 640x360 and 1280x720 of a 720p capture. Chromium drops the top layers of a
// smaller capture, hence the larger one.
export const SIMULCAST_CAMERA_CONSTRAINTS = {
  width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24, max: 30 },
};
export const SIMULCAST_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1500000 },
];
// How long a tile's size must hold before the server hears of it (`tile_size`).
const TILE_REPORT_DELAY_MS = 250;

export function signalingUrl(meetingId, loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/api/v1/meetings/${encodeURIComponent(meetingId)}/ws`;
}

// The socket URL for a join: the server's `ws_url` (absolute or a path) or ours, plus the token.
export function socketUrl(base, token, loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = new URL(base, `${scheme}//${loc.host}/`);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  if (token) url.searchParams.set('token', token);
  return url.href;
}

// Delay before reconnect attempt `attempt` (0-based): exponential, capped, with jitter so
// a whole meeting told to reconnect at once does not knock on the door in step.
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  return Math.round(base * (0.75 + 0.5 * random()));
}

function sourceOfLocalTrack(track) {
  return track.kind === 'audio' ? 'microphone' : 'camera';
}

export class MeetingSession extends EventTarget {
  // `credentials.get({fresh})` resolves with {token, wsUrl?} or rejects with an ApiError;
  // `fresh` asks for a new token (the last one was refused or is about to expire).
  constructor(meetingId, { wsUrl = signalingUrl(meetingId), mediaDevices = navigator.mediaDevices, credentials = null } = {}) {
    super();
    this.meetingId = meetingId;
    this.wsUrl = wsUrl;
    this.mediaDevices = mediaDevices;
    this.credentials = credentials;
    this.token = null;
    this.needFreshToken = false;
    this.role = 'participant';            // 'host' when our token carries the moderate grant
    this.mayTranscribe = false;           // `joined` says whether we may start transcription
    this.simulcast = false;               // `joined` says whether the server takes simulcast
    this.tileSizes = new Map();           // track_id -> {width, height, visible} last told the server
    this.tileTimers = new Map();          // track_id -> pending report
    this.waitingReason = null;            // waiting_room | waiting_for_host while state is waiting
    this.waitingRoom = [];                // (host) people waiting: [{participant_id, name, ...}]
    this.ended = null;                    // {kind, reason} once state is left
    this.locked = null;                   // the meeting is locked (known once the server says)
    this.state = 'idle';
    this.name = '';
    this.participantId = null;
    this.participants = new Map();        // participant_id -> participant (others only)
    this.activeSpeaker = null;            // participant_id of who speaks (`active_speaker`), or null
    this.viewers = [];                    // WHEP viewers watching ({viewer_id, label}), not participants
    this.chat = [];                       // chat messages, ascending seq
    this.localStream = null;              // microphone + camera
    this.screenStream = null;
    this.muted = { microphone: false, camera: false };
    this.hostMuted = new Set();           // sources the host muted: only the host can allow them again
    this.leftReason = null;               // why state became "left" (null: the user left)
    this.reconnects = 0;                  // times the connection was lost and rebuilt
    this.redirects = 0;                   // times a node sent us to the node holding the meeting
    this.reconnectCredential = null;      // the server's latest, while admitted (rejoin.js)
    this.rejoinNext = false;              // the next connection trades it for a token first
    this.iceServers = [];
    this.recording = new RecordingControl(this);   // recording_state, consent, the host's commands
    this.trackStates = new TrackStates();          // what the server said of each video we receive
    this.layers = new PublishLayers((trackId) => this.senderOfTrack(trackId));   // publish_layers
    this.connectionQuality = new ConnectionQuality();   // `connection_quality`: everyone's level
    this.freezes = new FreezeReporter((msg) => this.sendRaw(msg), () => this.subPc);   // `media_stats`
    this.stage = new StageState();        // webinar: may we publish, our hand; (host) speakers and hands

    this.ws = null;
    this.pubPc = null;
    this.subPc = null;
    this.pubSources = new Map();          // publish transceiver -> source
    this.subTracks = new Map();           // subscribe mid -> track metadata of the last offer
    this.pubChain = Promise.resolve();    // publish negotiations run one after another
    this.subChain = Promise.resolve();    // server offers are answered one after another
    this.pending = new Map();             // request id -> {resolve, reject, timer, type}
    this.nextId = 1;
    this.attempt = 0;
    this.retryTimer = null;
    this.joinTimer = null;
    this.pingTimer = null;
    this.lastFrameAt = 0;
    this.joinRequestId = null;
  }

  // ------------------------------------------------------------------ public API

  get active() {
    return ['joining', 'waiting', 'joined', 'reconnecting'].includes(this.state);
  }

  // `grant` ({token, wsUrl}) is a join token the page already holds (from the join request
  // that told it whether to wait); without one, `credentials.get()` is asked.
  async join(name, grant = null) {
    if (this.active) return;
    this.name = name;
    this.leftReason = null;
    this.ended = null;
    this.waitingRoom = [];
    this.participantId = null;
    this.hostMuted = new Set();
    this.reconnectCredential = null;
    if (grant) this.setToken(grant.token, grant.wsUrl);
    // A webinar's attendee receives only: no camera or microphone is asked for (until promoted).
    this.stage.reset(!grant || grant.mayPublish !== false);
    this.attempt = 0;
    this.setState('joining');
    if (this.stage.mayPublish) await this.acquireLocalMedia();
    if (this.state !== 'joining') {           // left while the permission prompt was up
      this.stopLocalMedia();
      return;
    }
    this.connect();
  }

  // `code` says why, for the page's wording (e.g. left_recording: left a recorded meeting).
  leave({ code = null } = {}) {
    if (!this.active) return;
    this.sendRaw({ type: 'leave' });
    this.shutdown(null, 'left', { code });
  }

  sendChat(text) {
    const trimmed = (text || '').trim();
    if (!trimmed || this.state !== 'joined') return false;
    return this.send({ type: 'chat', text: trimmed, id: this.newId() });
  }

  setMuted(source, muted, { tellServer = true } = {}) {
    if (!(source in this.muted)) throw new Error(`unknown source ${source}`);
    if (!muted && this.hostMuted.has(source)) {
      // The server would refuse it anyway: say why instead of pretending.
      const what = source === 'microphone' ? 'microphone' : 'camera';
      this.notice(`The host turned off your ${what}; only the host can let you turn it back on.`, 'warn');
      return;
    }
    this.muted[source] = !!muted;
    for (const track of this.localTracks(source)) track.enabled = !muted;
    if (tellServer && this.state === 'joined') this.send({ type: 'mute', source, muted: !!muted });
    this.emit('local');
  }

  hasLocal(source) {
    return this.localTracks(source).length > 0;
  }

  async shareScreen(stream) {
    if (this.state !== 'joined') throw new Error('not in the meeting');
    if (!this.stage.mayPublish) throw new Error('attendees cannot share their screen; raise your hand to ask');
    if (this.screenStream) await this.stopScreen();
    const shared = stream || await this.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: 15 } }, audio: true,
    });
    const video = shared.getVideoTracks()[0];
    if (!video) throw new Error('the shared stream has no video');
    if ('contentHint' in video) video.contentHint = 'detail';
    // The browser's own "Stop sharing" ends the track; treat it like our button.
    video.addEventListener('ended', () => {
      if (this.screenStream === shared) this.stopScreen().catch((e) => this.notice(e.message));
    });
    this.screenStream = shared;
    if (this.pubPc) this.addScreenTransceivers(this.pubPc);
    this.emit('local');
    await this.negotiatePublish();
  }

  async stopScreen() {
    const stream = this.screenStream;
    if (!stream) return;
    this.screenStream = null;
    for (const [transceiver, source] of [...this.pubSources]) {
      if (source !== 'screen' && source !== 'screen-audio') continue;
      this.pubSources.delete(transceiver);
      try { transceiver.stop(); } catch (e) { /* pc already closed */ }
    }
    for (const track of stream.getTracks()) track.stop();
    this.emit('local');
    await this.negotiatePublish();
  }

  // Remote tracks currently forwarded to us: [{participant_id, source, kind, mid, track_id, track}].
  // The server's announcement track (source "announcement", participant_id null) is one of them.
  remoteMedia() {
    const out = [];
    if (!this.subPc) return out;
    for (const transceiver of this.subPc.getTransceivers()) {
      const meta = this.subTracks.get(transceiver.mid);
      if (!meta || meta.active === false) continue;
      out.push({ ...meta, track: transceiver.receiver.track });
    }
    return out;
  }

  // The track the server plays its spoken notices on ("This meeting is being recorded"), or null.
  announcementTrack() {
    const media = this.remoteMedia().find((m) => m.source === ANNOUNCEMENT_SOURCE);
    return media ? media.track : null;
  }

  // {participant_id: {source: {kind, framesDecoded, packetsReceived, bytesReceived}}}
  stats() {
    return subscribeStats(this.subPc, this.subTracks);
  }

  // What arrived on the server's announcement track (null when none was offered).
  announcementStats() {
    return announcementStats(this.subPc, this.subTracks);
  }

  // Bytes received over every inbound RTP stream, whatever it carries (0 with no connection).
  inboundBytes() {
    return inboundBytes(this.subPc);
  }

  // {source: {kind, packetsSent, bytesSent, framesEncoded}} summed over encodings.
  publishStats() {
    return publishStats(this.pubPc, this.pubSources);
  }

  publishEncodings() {
    return publishEncodingStats(this.pubPc);
  }

  // Closes the socket as a network failure would (tests use it to exercise reconnecting).
  simulateDisconnect() {
    if (this.ws) this.ws.close(4000, 'simulated disconnect');
  }

  // ------------------------------------------------------------------ tiles

  // The tile showing remote track `trackId` is now `width` x `height` device pixels, or
  // hidden: told the server (`tile_size`) once it has held for TILE_REPORT_DELAY_MS and
  // differs from what it was last told. It picks the simulcast layer to forward.
  reportTile(trackId, width, height, visible) {
    if (!trackId) return;
    const size = { width: Math.round(width), height: Math.round(height), visible: !!visible };
    const same = (other) => other && other.width === size.width && other.height === size.height
      && other.visible === size.visible;
    const pending = this.tileTimers.get(trackId);
    if (pending && same(pending.size)) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.tileTimers.delete(trackId);
      if (same(this.tileSizes.get(trackId)) || this.state !== 'joined') return;
      if (this.send({ type: 'tile_size', track_id: trackId, ...size })) this.tileSizes.set(trackId, size);
    }, TILE_REPORT_DELAY_MS);
    this.tileTimers.set(trackId, { timer, size });
  }

  // ------------------------------------------------------------------ local media

  cameraConstraints() {
    return this.simulcast ? SIMULCAST_CAMERA_CONSTRAINTS : CAMERA_CONSTRAINTS;
  }

  // Simulcast: the camera captured before we knew goes up to 720p (the top layer).
  upgradeCamera() {
    for (const track of this.localTracks('camera')) {
      track.applyConstraints(SIMULCAST_CAMERA_CONSTRAINTS).catch(() => {});
    }
  }

  async acquireLocalMedia() {
    if (this.localStream && this.localStream.getTracks().some((t) => t.readyState === 'live')) return;
    const attempts = [
      { audio: true, video: this.cameraConstraints() },
      { audio: true, video: false },
      { audio: false, video: this.cameraConstraints() },
    ];
    let lastError = null;
    for (const constraints of attempts) {
      try {
        this.localStream = await this.mediaDevices.getUserMedia(constraints);
        break;
      } catch (err) {
        lastError = err;
      }
    }
    if (!this.localStream) {
      this.localStream = new MediaStream();
      this.notice(`No camera or microphone (${lastError && lastError.name}); joining to watch and listen.`, 'warn');
    }
    for (const source of ['microphone', 'camera']) {
      for (const track of this.localTracks(source)) track.enabled = !this.muted[source];
    }
    this.emit('local');
  }

  localTracks(source) {
    if (!this.localStream) return [];
    const tracks = source === 'microphone' ? this.localStream.getAudioTracks() : this.localStream.getVideoTracks();
    return tracks.filter((t) => t.readyState === 'live');
  }

  stopLocalMedia() {
    for (const stream of [this.localStream, this.screenStream]) {
      if (stream) for (const track of stream.getTracks()) track.stop();
    }
    this.localStream = null;
    this.screenStream = null;
  }

  // ------------------------------------------------------------------ socket

  // Gets a join token (a fresh one when the last was refused or is about to expire), then
  // opens the socket with it and sends `join`.
  async connect() {
    let token;
    try {
      token = await this.usableToken();
    } catch (err) {
      if (!this.active) return;
      if (err instanceof ApiError && err.status !== 0 && err.status !== 429 && err.status < 500) {
        this.shutdown(err.message, JOIN_REFUSALS[err.code] || 'refused', { code: err.code });
      } else {
        this.connectionLost(err.message, { delayMs: err.retryAfter ? err.retryAfter * 1000 : null });
      }
      return;
    }
    if (this.state !== 'joining' && this.state !== 'reconnecting') return;   // left meanwhile
    const ws = new WebSocket(token ? socketUrl(this.wsUrl, token) : this.wsUrl);
    this.ws = ws;
    this.lastFrameAt = Date.now();
    let opened = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.joinRequestId = this.newId();
      const msg = { type: 'join', name: this.name, id: this.joinRequestId };
      if (token) msg.token = token;
      if (this.participantId) msg.participant_id = this.participantId;
      this.sendRaw(msg);
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      this.lastFrameAt = Date.now();
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg && typeof msg.type === 'string') this.dispatch(msg);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      if (event.code === REPLACED_CLOSE_CODE) {
        this.shutdown('You joined this meeting from another window.', 'replaced');
        return;
      }
      // Refused before opening: the token may be expired or revoked, or the meeting gone.
      // The next attempt asks for a new token, and that request says what is wrong.
      if (!opened) this.needFreshToken = true;
      this.connectionLost('connection closed');
    };
    clearTimeout(this.joinTimer);
    this.joinTimer = setTimeout(() => {
      if (this.ws === ws && this.state !== 'joined' && this.state !== 'waiting') this.connectionLost('no answer to join');
    }, JOIN_TIMEOUT_MS);
  }

  async usableToken() {
    if (this.rejoinNext && this.reconnectCredential) {
      try {
        const grant = await rejoinGrant(this.meetingId, this.reconnectCredential);
        this.rejoinNext = false;
        this.setToken(grant.token, grant.wsUrl);
        return this.token;
      } catch (err) {
        if (!credentialRefused(err)) throw err;   // away (retried), or final (ended, removed)
        this.reconnectCredential = null;          // expired, left: join the ordinary way
        this.rejoinNext = false;
      }
    }
    if (!this.credentials) return null;
    const fresh = this.needFreshToken || !this.token || tokenSecondsLeft(this.token) < TOKEN_MARGIN_S;
    if (fresh) {
      const grant = await this.credentials.get({ fresh: !!this.token });
      this.setToken(grant.token, grant.wsUrl);
    }
    return this.token;
  }

  setToken(token, wsUrl = null) {
    this.token = token;
    this.needFreshToken = false;
    if (wsUrl) this.wsUrl = wsUrl;
    const claims = tokenClaims(token);
    const moderator = claims.role === 'host' || !!(claims.grants && claims.grants.moderate);
    this.role = moderator ? 'host' : 'participant';
    // Who the token says we are: known before `joined` (a waiting participant has an id too).
    if (typeof claims.sub === 'string' && claims.sub) this.participantId = claims.sub;
  }

  closeSocket() {
    const ws = this.ws;
    this.ws = null;
    clearTimeout(this.joinTimer);
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.freezes.stop();
    if (ws && ws.readyState <= WebSocket.OPEN) {
      try { ws.close(1000, 'bye'); } catch (e) { /* already closing */ }
    }
    for (const [, req] of this.pending) {
      clearTimeout(req.timer);
      req.reject(new Error('connection closed'));
    }
    this.pending.clear();
  }

  newId() {
    return this.nextId++;
  }

  sendRaw(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  send(msg) {
    return this.sendRaw(msg);
  }

  // Sends `msg` (with a fresh id) and resolves with the reply of type `replyType` echoing it.
  request(msg, replyType, { timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    const id = this.newId();
    return new Promise((resolve, reject) => {
      if (!this.sendRaw({ ...msg, id })) {
        reject(new Error('not connected'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no ${replyType} from the server`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, type: replyType });
    });
  }

  settle(msg) {
    if (msg.id === undefined || msg.id === null) return false;
    const req = this.pending.get(msg.id);
    if (!req) return false;
    this.pending.delete(msg.id);
    clearTimeout(req.timer);
    if (msg.type === 'error') {
      const err = new Error(msg.message || msg.code);
      err.code = msg.code;
      req.reject(err);
    } else {
      req.resolve(msg);
    }
    return true;
  }

  startPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastFrameAt > SILENCE_LIMIT_MS) {
        this.connectionLost('the server stopped answering');
        return;
      }
      this.sendRaw({ type: 'ping' });
    }, PING_INTERVAL_MS);
  }

  // ------------------------------------------------------------------ messages

  dispatch(msg) {
    const finalKind = FINAL_MESSAGES[msg.type];
    if (finalKind) {
      this.shutdown(msg.reason || null, finalKind, { code: msg.reason || msg.type });
      return;
    }
    switch (msg.type) {
      case 'waiting': this.onWaiting(msg); return;
      case 'waiting_room': this.onWaitingRoom(msg.participants); return;
      case 'reconnect':
        // The server may hand over a fresh token for coming back as the same participant.
        if (typeof msg.token === 'string' && msg.token) this.setToken(msg.token);
        // A draining node names the node that holds the meeting now.
        if (typeof msg.url === 'string' && /^wss?:\/\//.test(msg.url)) this.wsUrl = msg.url;
        this.connectionLost(msg.reason || 'the media server restarted', { rejoin: !msg.token });
        return;
      case 'reconnect_credential':
        if (typeof msg.credential === 'string' && msg.credential) this.reconnectCredential = msg.credential;
        return;
      case 'redirect':
        // Several nodes: the meeting runs on another one. Same token, that node's socket;
        // at once the first times, then with the backoff (nodes that disagree).
        if (typeof msg.url === 'string' && /^wss?:\/\//.test(msg.url)) this.wsUrl = msg.url;
        this.connectionLost('the meeting runs on another node',
          { delayMs: this.redirects++ < 3 ? 0 : null, rejoin: false });
        return;
      case 'meeting_updated': this.onMeetingUpdated(msg); return;
      case 'joined': this.onJoined(msg); return;
      case 'error': this.onError(msg); return;
      default: break;
    }
    if (this.state !== 'joined') return;
    switch (msg.type) {
      case 'publish_answer': case 'ok': this.settle(msg); break;
      case 'offer': this.onOffer(msg); break;
      case 'participant_joined': case 'participant_updated': this.onParticipant(msg.participant); break;
      case 'participant_left': this.onParticipantLeft(msg.participant_id); break;
      case 'participants_changed': this.onParticipantsChanged(msg); break;
      case 'active_speaker': this.onActiveSpeaker(msg.participant_id); break;
      case 'viewers': this.onViewers(msg.viewers); break;
      case 'chat': this.onChat(msg.message); break;
      case 'muted_by_host': this.onMutedByHost(msg); break;
      case 'recording_state': this.recording.onMessage(msg); break;
      case 'track_paused': case 'track_resumed': case 'track_quality':
        if (this.trackStates.onMessage(msg)) this.emit('quality', { trackId: msg.track_id });
        break;
      case 'publish_layers': this.layers.onMessage(msg); break;
      case 'stage_role': this.onStageRole(msg); break;
      case 'stage': this.stage.onStage(msg); this.emit('stage'); break;
      case 'connection_quality':
        if (this.connectionQuality.onMessage(msg)) this.emit('connection');
        break;
      default: break;   // track_published / track_unpublished / pong: offers carry what we need
    }
  }

  // Held back (waiting room, or the host has not started): no media, no chat, no list.
  onWaiting(msg) {
    clearTimeout(this.joinTimer);
    clearInterval(this.pingTimer);   // the server does not answer pings from the waiting room
    this.pingTimer = null;
    this.freezes.stop();
    this.attempt = 0;
    if (this.state === 'joined') {   // sent back to the waiting room: drop everything we had
      this.recording.reset();
      this.closePcs();
      this.participants = new Map();
      this.activeSpeaker = null;
      this.emit('participants');
      this.emit('media');
    }
    this.waitingReason = msg.reason === 'waiting_for_host' ? 'waiting_for_host' : 'waiting_room';
    this.setState('waiting', { reason: this.waitingReason });
  }

  onMeetingUpdated(msg) {
    if (typeof msg.locked === 'boolean') this.locked = msg.locked;
    this.emit('meeting', { locked: this.locked });
  }

  onWaitingRoom(list) {
    this.waitingRoom = Array.isArray(list) ? list.filter((p) => p && p.participant_id) : [];
    this.emit('waitingroom');
  }

  // The host paused one of our sources on the media server: mirror it locally so the
  // buttons tell the truth (the server has stopped forwarding it anyway).
  onMutedByHost(msg) {
    const source = msg.source;
    if (!(source in this.muted)) return;
    const muted = msg.muted !== false;
    if (muted) {
      this.hostMuted.add(source);
      this.setMuted(source, true, { tellServer: false });
    } else {
      this.hostMuted.delete(source);
      this.emit('local');
    }
    this.emit('hostmute', { source, muted });
  }

  onJoined(msg) {
    clearTimeout(this.joinTimer);
    this.waitingReason = null;
    if (msg.role === 'host' || msg.role === 'participant') this.role = msg.role;
    this.mayTranscribe = msg.may_transcribe === true;
    this.simulcast = msg.simulcast === true;
    this.tileSizes = new Map();   // a new subscribe connection: its consumers start afresh
    this.trackStates.reset();
    this.layers.reset();          // and a new publish connection: new track ids
    this.connectionQuality.reset();   // everyone's level follows `joined`
    if (this.simulcast) this.upgradeCamera();
    // Back as the same participant: keep the chat seen so far (history may be capped).
    if (msg.participant_id !== this.participantId) this.chat = [];
    this.participantId = msg.participant_id;
    this.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    this.participants = new Map((msg.participants || []).map((p) => [p.participant_id, p]));
    this.activeSpeaker = null;            // `active_speaker` follows when someone speaks
    for (const m of msg.chat || []) this.insertChat(m);
    this.attempt = 0;
    this.retriedFreshToken = false;
    this.startPing();
    this.freezes.start();
    this.subPc = this.createSubscribePc();
    this.stage.onJoined(msg);
    if (!this.stage.mayPublish) this.stopLocalMedia();   // (demoted while away) nothing to send
    this.pubPc = this.stage.mayPublish ? this.createPublishPc() : null;
    this.recording.onJoined();
    this.setState('joined');
    this.emit('participants');
    this.emit('chat', { message: null });
    for (const source of ['microphone', 'camera']) {
      if (this.muted[source]) this.send({ type: 'mute', source, muted: true });
    }
    this.negotiatePublish();
  }

  onParticipant(p) {
    if (!p || !p.participant_id) return;
    if (p.participant_id === this.participantId) return;
    this.participants.set(p.participant_id, p);
    this.emit('participants');
  }

  // A batch of joins, updates and leaves (or a page of the list after `joined`): one redraw.
  onParticipantsChanged(msg) {
    const { changed, left } = applyParticipantsChanged(this.participants, msg, this.participantId);
    for (const participantId of left) {
      if (participantId === this.activeSpeaker) this.activeSpeaker = null;
      this.connectionQuality.forget(participantId);
    }
    if (changed) this.emit('participants');
  }

  onParticipantLeft(participantId) {
    if (participantId === this.activeSpeaker) this.activeSpeaker = null;
    this.connectionQuality.forget(participantId);
    if (this.participants.delete(participantId)) this.emit('participants');
  }

  // The server's detector names who speaks (silence changes nothing; null: the speaker left).
  // Who watches over WHEP (docs/whep.md): shown as a count, never as participants.
  onViewers(viewers) {
    this.viewers = Array.isArray(viewers) ? viewers.filter((v) => v && typeof v.label === 'string') : [];
    this.emit('viewers');
  }

  onActiveSpeaker(participantId) {
    const speaker = typeof participantId === 'string' && participantId ? participantId : null;
    if (speaker === this.activeSpeaker) return;
    this.activeSpeaker = speaker;
    this.emit('speaker', { participantId: speaker });
  }

  onChat(message) {
    if (!message || typeof message.seq !== 'number') return;
    if (this.insertChat(message)) this.emit('chat', { message });
  }

  // Keeps `chat` in server order whatever the arrival order; ignores duplicates.
  insertChat(message) {
    let i = this.chat.length;
    while (i > 0 && this.chat[i - 1].seq > message.seq) i--;
    if (i > 0 && this.chat[i - 1].seq === message.seq) return false;
    this.chat.splice(i, 0, message);
    return true;
  }

  onError(msg) {
    if (msg.id !== undefined && msg.id === this.joinRequestId && this.state !== 'joined') {
      if (msg.code === 'already_joined') return;   // the token in the URL joined us already
      if (TRANSIENT_JOIN_ERRORS.has(msg.code)) {
        this.connectionLost(msg.message || msg.code);
        return;
      }
      if (/token|unauthorized|expired/.test(msg.code || '') && !this.retriedFreshToken) {
        this.retriedFreshToken = true;   // one new token per refusal; then it is final
        this.needFreshToken = true;
        this.connectionLost(msg.message || msg.code, { delayMs: 0 });
        return;
      }
      // A meeting that ended while we were away says why (`reason`), as `meeting_ended` does.
      this.shutdown(msg.message || msg.code || 'could not join', JOIN_REFUSALS[msg.code] || 'refused',
        { code: msg.reason || msg.code });
      return;
    }
    if (this.settle(msg)) return;   // the request's caller reports it
    if (this.state !== 'joined') return;   // nothing to act on while waiting
    if (msg.code === 'recording_failed') {
      this.recording.onFailed(msg);
      return;
    }
    this.notice(msg.message || msg.code || 'server error', 'error');
  }

  // ------------------------------------------------------------------ webinar (stage.js)

  // Promoted: the camera and microphone are asked for now, then published. Demoted: the
  // server stopped our tracks; the publish connection and the devices are released.
  async onStageRole(msg) {
    const changed = this.stage.onRole(msg);
    this.emit('stage');
    if (!changed) return;
    if (this.stage.mayPublish) {
      await this.acquireLocalMedia();
      if (this.state !== 'joined' || !this.stage.mayPublish || this.pubPc) return;
      this.pubPc = this.createPublishPc();
      this.notice('The host made you a speaker: your camera and microphone are on.', 'info');
      await this.negotiatePublish();
    } else {
      const pc = this.pubPc;
      this.pubPc = null;
      this.pubSources = new Map();
      if (pc) pc.close();
      this.stopLocalMedia();
      this.notice('The host made you an attendee again: you watch and listen.', 'info');
    }
    this.emit('local');
  }

  raiseHand(raised = true) {
    return this.request({ type: 'hand', raised: !!raised }, 'ok');
  }

  lowerHandOf(participantId) {
    return this.request({ type: 'hand', raised: false, participant_id: participantId }, 'ok');
  }

  setSpeaker(participantId, speaker) {
    return this.request({ type: speaker ? 'promote' : 'demote', participant_id: participantId }, 'ok');
  }

  // ------------------------------------------------------------------ publish PC

  createPublishPc() {
    const pc = new RTCPeerConnection(rtcConfiguration(this.iceServers));
    this.pubSources = new Map();
    for (const source of ['microphone', 'camera']) {
      for (const track of this.localTracks(source)) {
        const init = { direction: 'sendonly', streams: [this.localStream] };
        if (source === 'camera' && this.simulcast) init.sendEncodings = SIMULCAST_ENCODINGS.map((e) => ({ ...e }));
        const t = pc.addTransceiver(track, init);
        this.pubSources.set(t, source);
      }
    }
    if (this.screenStream) this.addScreenTransceivers(pc);
    this.recording.applyHold();   // a rejoin while consent is pending sends nothing either
    this.watchPc(pc, 'publish');
    return pc;
  }

  addScreenTransceivers(pc) {
    const stream = this.screenStream;
    for (const track of stream.getTracks()) {
      if (track.readyState !== 'live') continue;
      const source = track.kind === 'video' ? 'screen' : 'screen-audio';
      const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      this.pubSources.set(t, source);
    }
    this.recording.applyHold();   // consent pending: the new tracks wait too
  }

  // Queues one offer/answer round on the publish PC; a round asked for while another is
  // pending runs after it, so the server never sees two publish offers at once.
  negotiatePublish() {
    const pc = this.pubPc;
    const round = this.pubChain.then(() => this.publishRound(pc));
    this.pubChain = round.catch((err) => {
      if (pc === this.pubPc) this.notice(`Publishing failed: ${err.message}`, 'error');
    });
    return this.pubChain;
  }

  async publishRound(pc) {
    if (!pc || pc !== this.pubPc || pc.signalingState === 'closed') return;
    if (this.pubSources.size === 0 && pc.getTransceivers().length === 0) return;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const tracks = [];
    for (const [t, source] of this.pubSources) {
      if (t.mid !== null && t.direction !== 'stopped') tracks.push({ mid: t.mid, source });
    }
    let answer;
    try {
      answer = await this.request({ type: 'publish', sdp: pc.localDescription.sdp, tracks }, 'publish_answer');
    } catch (err) {
      if (pc === this.pubPc && pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      }
      throw err;
    }
    if (pc !== this.pubPc || pc.signalingState !== 'have-local-offer') return;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    this.publishedTracks = answer.tracks || [];
    this.layers.apply();   // a renegotiation may have reset the encodings' active flags
  }

  // The sender of our published track `trackId` (publish_answer names its mid), or null.
  senderOfTrack(trackId) {
    const published = (this.publishedTracks || []).find((t) => t.track_id === trackId);
    if (!published || !this.pubPc) return null;
    const transceiver = this.pubPc.getTransceivers().find((t) => t.mid === String(published.mid));
    return transceiver ? transceiver.sender : null;
  }

  // ------------------------------------------------------------------ subscribe PC

  createSubscribePc() {
    const pc = new RTCPeerConnection(rtcConfiguration(this.iceServers));
    this.subTracks = new Map();
    this.subChain = Promise.resolve();
    this.watchPc(pc, 'subscribe');
    return pc;
  }

  onOffer(msg) {
    const pc = this.subPc;
    this.subChain = this.subChain
      .then(() => this.answerOffer(pc, msg))
      .catch((err) => {
        if (pc !== this.subPc) return;
        this.notice(`Could not apply the server's offer: ${err.message}`, 'error');
        this.connectionLost('subscribe negotiation failed');
      });
  }

  async answerOffer(pc, msg) {
    if (pc !== this.subPc || pc.signalingState === 'closed') return;
    // The offer's metadata names every m-line; set it before ontrack can fire.
    this.subTracks = new Map((msg.tracks || []).map((t) => [String(t.mid), t]));
    await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (pc !== this.subPc) return;
    this.send({ type: 'answer', sdp: pc.localDescription.sdp });
    this.emit('media');
  }

  watchPc(pc, role) {
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'failed' && (pc === this.pubPc || pc === this.subPc)) {
        this.connectionLost(`${role} media connection failed`);
      }
    });
    pc.addEventListener('track', (event) => {
      if (role !== 'subscribe') return;
      event.track.addEventListener('unmute', () => this.emit('media'));
      event.track.addEventListener('mute', () => this.emit('media'));
      this.emit('media');
    });
  }

  closePcs() {
    for (const pc of [this.pubPc, this.subPc]) {
      if (pc) {
        try { pc.close(); } catch (e) { /* already closed */ }
      }
    }
    this.pubPc = null;
    this.subPc = null;
    this.pubSources = new Map();
    this.subTracks = new Map();
    this.pubChain = Promise.resolve();
    this.subChain = Promise.resolve();
  }

  // ------------------------------------------------------------------ lifecycle

  // The socket or the media went away (or the server asked us to come back): drop both
  // PCs and the socket, then join again with the same participant_id after a backoff.
  // While waiting, `waitingReason` stays set so the page keeps showing the waiting screen.
  // `rejoin`: come back through our reconnect credential (when admitted we hold one): the
  // server may have restarted, or the meeting moved to another node.
  connectionLost(reason, { delayMs = null, rejoin = true } = {}) {
    if (!this.active) return;
    this.rejoinNext = rejoin && !!this.reconnectCredential;
    this.closePcs();
    this.closeSocket();
    const wasJoined = this.state === 'joined';
    if (this.state !== 'reconnecting') this.reconnects += 1;
    this.setState('reconnecting', { reason });
    if (wasJoined) this.emit('media');
    if (this.retryTimer) return;
    const delay = delayMs ?? backoffDelay(this.attempt++);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.state === 'reconnecting') this.connect();
    }, delay);
  }

  // Ends the session for good. `kind`: left (the user did), denied, removed, meeting_ended,
  // signed_out (the host signed in elsewhere), replaced (joined from another window),
  // refused (the server would not let us in: `reason` says why), error.
  shutdown(reason, kind = reason === null ? 'left' : 'error', { code = null } = {}) {
    if (this.state === 'left') return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.closePcs();
    this.closeSocket();
    this.stopLocalMedia();
    this.recording.reset();
    this.participants = new Map();
    this.activeSpeaker = null;
    this.waitingRoom = [];
    this.waitingReason = null;
    this.leftReason = reason;
    this.reconnectCredential = null;
    this.ended = { kind, reason, code };
    this.setState('left', { reason, kind, code });
    this.emit('participants');
    this.emit('media');
    this.emit('local');
  }

  setState(state, detail = {}) {
    this.state = state;
    this.emit('state', { state, ...detail });
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  notice(text, level = 'info') {
    this.emit('notice', { text, level });
  }
}
