// Recording and transcription as a participant lives them (docs/signaling.md, "Recording"):
// the server's `recording_state`, the consent it may ask for, the host's start/stop
// commands, and what the notice banner should say. No DOM here: recordingbanner.js draws.
//
// Consent: under the customer's `require` policy the server sends `consent_required: true`
// to whoever has not said Continue yet. Until then this client sends no media at all:
// every send transceiver's track is swapped for null (`replaceTrack(null)`), so nothing
// leaves the browser even before the server pauses what we publish; Continue (acked by
// the server's `ok`) puts the tracks back.

export const STOPPED_NOTICE_MS = 4000;   // how long "Recording stopped" stays up
// After a rejoin the server re-sends `recording_state` if anything is on; with no such
// message this long after `joined`, whatever we believed was on has stopped meanwhile.
export const STALE_STATE_MS = 3000;
// A start waits for the recorder (which may be restarting) and sets up the recording on
// the media server: longer than an ordinary request.
export const COMMAND_TIMEOUT_MS = 45000;

// Called as methods of the objects below, the window's own timer functions would throw
// ("Illegal invocation"): wrap them.
export const defaultSetTimer = (fn, ms) => setTimeout(fn, ms);
export const defaultClearTimer = (id) => clearTimeout(id);

export const OFF = Object.freeze({
  recording: false, transcription: false, consentPolicy: 'notify', consentRequired: false, by: null,
});

// A `recording_state` message as a state object (unknown or mistyped fields ignored).
export function readState(msg) {
  const m = msg || {};
  return {
    recording: m.recording === true,
    transcription: m.transcription === true,
    consentPolicy: m.consent_policy === 'require' ? 'require' : 'notify',
    consentRequired: m.consent_required === true,
    by: typeof m.by === 'string' && m.by ? m.by : null,
  };
}

export function isOn(state) {
  return !!(state && (state.recording || state.transcription));
}

// The banner's headline for a state, or null when nothing is recorded or transcribed.
export function noticeText(state) {
  if (state.recording && state.transcription) return 'This meeting is being recorded and transcribed';
  if (state.recording) return 'This meeting is being recorded';
  if (state.transcription) return 'This meeting is being transcribed';
  return null;
}

// What stopped between two states ("Recording stopped"), or null if nothing did.
export function stoppedText(before, after) {
  const recording = before.recording && !after.recording;
  const transcription = before.transcription && !after.transcription;
  if (recording && transcription) return 'Recording and transcription stopped';
  if (recording) return 'Recording stopped';
  if (transcription) return 'Transcription stopped';
  return null;
}

// The line under the headline: who turned it on, and what the person can do about it
// (the host, who turns it on and off, is told that everyone else sees the notice too).
export function noticeDetail(state, consentPending, { host = false } = {}) {
  const by = state.by ? `Started by ${state.by}. ` : '';
  if (host && !consentPending) return `${by}Everyone in the meeting sees this notice and hears it announced.`;
  if (consentPending) {
    return `${by}Your camera and microphone stay off until you choose Continue. ` +
      'Choose Leave if you do not want to take part.';
  }
  const what = state.recording ? 'recorded' : 'transcribed';
  return `${by}If you do not want to be ${what}, you can leave the meeting.`;
}

// The banner as a small state machine: on (with the state's words), "stopped" for a few
// seconds after everything went off, then hidden. Timers are injected for tests.
export class RecordingNotice {
  // `isHost()`: whether the person is the host (the wording differs, see noticeDetail).
  constructor({ onChange = () => {}, setTimer = defaultSetTimer, clearTimer = defaultClearTimer, stoppedMs = STOPPED_NOTICE_MS,
    isHost = () => false } = {}) {
    this.onChange = onChange;
    this.isHost = isHost;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.stoppedMs = stoppedMs;
    this.timer = null;
    this.view = { mode: 'hidden', text: '', detail: '', canContinue: false };
  }

  // `before` → `state`, with `consentPending` (Continue shown) from the RecordingControl.
  update(before, state, consentPending) {
    if (isOn(state)) {
      this.cancelTimer();
      this.set({ mode: 'on', text: noticeText(state), detail: noticeDetail(state, consentPending, { host: this.isHost() }),
        canContinue: !!consentPending });
      return;
    }
    const stopped = stoppedText(before, state);
    if (!stopped) {
      if (this.view.mode === 'on') this.set({ mode: 'hidden', text: '', detail: '', canContinue: false });
      return;
    }
    this.cancelTimer();
    this.set({ mode: 'stopped', text: stopped, detail: '', canContinue: false });
    this.timer = this.setTimer(() => {
      this.timer = null;
      this.set({ mode: 'hidden', text: '', detail: '', canContinue: false });
    }, this.stoppedMs);
  }

  clear() {
    this.cancelTimer();
    this.set({ mode: 'hidden', text: '', detail: '', canContinue: false });
  }

  cancelTimer() {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
  }

  set(view) {
    this.view = view;
    this.onChange(view);
  }
}

// Server refusals of the recording commands (control/recording.py), worded for the host.
const COMMAND_ERRORS = {
  forbidden: (kind) => `Only the host can turn ${kind} on or off.`,
  recording_not_allowed: () => 'Recording is not enabled for your account.',
  transcription_not_allowed: () => 'Transcription is not enabled for your account.',
  storage_not_configured: (kind) => `${capital(kind)} needs storage: your account administrator has to set it up first.`,
  already_active: (kind) => `${capital(kind)} is on already.`,
  not_active: (kind) => `${capital(kind)} is not on.`,
  not_live: () => 'The meeting is not live any more.',
  recorder_unavailable: () => 'The recorder is not available right now. Try again in a moment.',
  unavailable: () => 'The recorder is not available right now. Try again in a moment.',
  rate_limited: () => 'Too many requests. Try again in a moment.',
};

function capital(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

// The server's own words as a sentence ("recording stopped: x" -> "Recording stopped: x.").
export function sentence(text) {
  const value = String(text || '').trim();
  return value ? `${capital(value)}${/[.!?]$/.test(value) ? '' : '.'}` : '';
}

// A readable sentence for a failed start/stop (`err.code` from the server's `error`).
export function commandErrorText(kind, action, err) {
  const word = kind === 'recording' ? 'recording' : 'transcription';
  const explain = err && COMMAND_ERRORS[err.code];
  if (explain) return explain(word);
  const said = sentence(err && err.message);
  return `Could not ${action} ${word}.${said ? ` ${said}` : ''}`;
}

// The session's part: state, consent and the media hold, the host's commands.
// Emits on the session: `recording` [before, state, consentPending].
export class RecordingControl {
  constructor(session, { setTimer = defaultSetTimer, clearTimer = defaultClearTimer, staleMs = STALE_STATE_MS } = {}) {
    this.session = session;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.staleMs = staleMs;
    this.state = OFF;
    this.consentPending = false;
    this.busy = new Set();       // "recording" / "transcription" / "consent" while a request is out
    this.held = new Map();       // send transceiver -> the track it sent before the hold
    this.staleTimer = null;
  }

  // A `recording_state` from the server.
  onMessage(msg) {
    this.cancelStale();
    const before = this.state;
    this.state = readState(msg);
    this.setPending(this.state.consentRequired && isOn(this.state));
    this.session.emit('recording', { before, state: this.state, consentPending: this.consentPending });
  }

  // The server's `error` `recording_failed` (to the host): the recorder gave up (its spool
  // is full, the storage refused); the state that follows turns the banner off.
  onFailed(msg) {
    this.session.notice(sentence(msg.message) || 'Recording stopped: the recorder failed.', 'error');
  }

  // `joined` (a first join or a rejoin): if something was on, the server says so again.
  onJoined() {
    this.cancelStale();
    if (!isOn(this.state)) return;
    this.staleTimer = this.setTimer(() => {
      this.staleTimer = null;
      this.onMessage(null);
    }, this.staleMs);
  }

  // The session is over: forget everything without any notice.
  reset() {
    this.cancelStale();
    const before = this.state;
    this.state = OFF;
    this.consentPending = false;
    this.held.clear();
    this.busy.clear();
    if (isOn(before)) this.session.emit('recording', { before: OFF, state: OFF, consentPending: false });
  }

  cancelStale() {
    if (this.staleTimer !== null) this.clearTimer(this.staleTimer);
    this.staleTimer = null;
  }

  setPending(pending) {
    if (pending === this.consentPending) return;
    this.consentPending = pending;
    this.applyHold();
  }

  // Holds (or gives back) the tracks of every send transceiver; idempotent, and called
  // again by the session whenever it adds transceivers (rejoin, screen share).
  applyHold() {
    const sources = this.session.pubSources;
    if (this.consentPending) {
      for (const transceiver of sources.keys()) {
        const track = transceiver.sender.track;
        if (!track) continue;
        this.held.set(transceiver, track);
        transceiver.sender.replaceTrack(null).catch(() => {});
      }
      return;
    }
    for (const [transceiver, track] of this.held) {
      if (sources.has(transceiver) && track.readyState === 'live') {
        transceiver.sender.replaceTrack(track).catch(() => {});
      }
    }
    this.held.clear();
  }

  // True when `transceiver` sends nothing because consent is pending (for the page/tests).
  isHeld(transceiver) {
    return this.held.has(transceiver);
  }

  // The person's answer to a `consent_required` notice. "leave" ends the session here
  // too (the server ends it as well); "continue" resolves once the server has said ok.
  async consent(decision) {
    if (decision !== 'continue' && decision !== 'leave') throw new Error(`unknown decision ${decision}`);
    if (decision === 'leave') {
      if (this.consentPending) this.session.sendRaw({ type: 'consent', decision: 'leave' });
      this.session.leave({ code: 'left_recording' });
      return;
    }
    this.busy.add('consent');
    this.session.emit('recording', { before: this.state, state: this.state, consentPending: this.consentPending });
    try {
      await this.session.request({ type: 'consent', decision: 'continue' }, 'ok');
      this.setPending(false);
    } finally {
      this.busy.delete('consent');
      this.session.emit('recording', { before: this.state, state: this.state, consentPending: this.consentPending });
    }
  }

  // The host's Start/Stop: kind "recording" | "transcription", action "start" | "stop".
  // Resolves with the server's `ok`; the new state arrives as `recording_state`.
  async command(kind, action) {
    if (kind !== 'recording' && kind !== 'transcription') throw new Error(`unknown kind ${kind}`);
    if (action !== 'start' && action !== 'stop') throw new Error(`unknown action ${action}`);
    this.busy.add(kind);
    this.session.emit('recording', { before: this.state, state: this.state, consentPending: this.consentPending });
    try {
      return await this.session.request({ type: kind, action }, 'ok', { timeoutMs: COMMAND_TIMEOUT_MS });
    } finally {
      this.busy.delete(kind);
      this.session.emit('recording', { before: this.state, state: this.state, consentPending: this.consentPending });
    }
  }

  snapshot() {
    return { ...this.state, consentPending: this.consentPending, busy: [...this.busy] };
  }
}
