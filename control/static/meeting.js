// The meeting page (/m/{number} and /join): the join form, the waiting screens, tiles,
// controls, chat and people, the host's controls, and the `window.conclave` test hook.
// The protocol lives in session.js, the way in (passcode, link, host start) in joinflow.js,
// the moderation calls in hostcontrols.js, the recording notice in recording.js and
// recordingbanner.js.

import { MeetingSession, signalingUrl } from './session.js';
import { TileBoard, attach } from './tiles.js';
import { RecordingBanner } from './recordingbanner.js';
import { commandErrorText } from './recording.js';
import { HostControls } from './hostcontrols.js';
import { IngestPanel } from './ingest.js';
import { StagePanel } from './stagepanel.js';
import { ParticipantCredentials, HostCredentials, readLocation, joinErrorText } from './joinflow.js';
import { api, ApiError, meetingDigits, formatMeetingNumber, meetingPath, hostSession, clearHostSession, sessionEndedText } from './api.js';
import { icons } from './icons.js';
import { selectedLocalCandidates } from './icepolicy.js';
import { el, fillIcons, toast, copyText, formatTime, initials, colorFor } from './ui.js';

const NAME_KEY = 'conclave.name';
const WIDE_LAYOUT = window.matchMedia('(min-width: 900px)');
const $ = (id) => document.getElementById(id);

function rememberedName() {
  try { return localStorage.getItem(NAME_KEY) || ''; } catch (e) { return ''; }
}

function rememberName(name) {
  try { localStorage.setItem(NAME_KEY, name); } catch (e) { /* private mode */ }
}

const place = readLocation();
const session = new MeetingSession(place.number || 'none');
const ui = {
  side: false, tab: 'chat', unread: 0, blockedAudio: new Set(),
  number: place.number,            // 11 digits once known (from the address or the form)
  linkToken: place.linkToken,
  title: '',
  joinUrl: null,                   // the invitation link (the host knows it)
  joining: false,                  // a join request is in flight
};
const board = new TileBoard($('grid'), $('screens'), {
  onAudioBlocked: audioBlocked,
  onTileSize: (trackId, width, height, visible) => session.reportTile(trackId, width, height, visible),
});
const recBanner = new RecordingBanner(session, {
  root: $('rec-banner'), text: $('rec-banner-text'), detail: $('rec-banner-detail'),
  continueButton: $('rec-continue'), leaveButton: $('rec-leave'),
});
let host = null;                   // HostControls once we are in as the host
const stagePanel = new StagePanel(session, { isHost: () => !!host, rerender: () => renderAll() });

function requireHost() {
  if (!host) throw new Error('only the host can do this');
  return host;
}

// The test hook: always present, only calls what the buttons call.
window.conclave = {
  get state() { return session.state; },
  get participantId() { return session.participantId; },
  get reconnects() { return session.reconnects; },
  get role() { return session.role; },
  get waitingReason() { return session.waitingReason; },
  get activeSpeaker() { return session.activeSpeaker; },   // participant_id or null
  // {mayPublish, role, handRaised, attendeesPublish, speakers, hands} (docs/signaling.md, "Webinars")
  get stage() { return session.stage.snapshot(); },
  raiseHand: (raised = true) => session.raiseHand(raised),
  get ended() { return session.ended ? { ...session.ended } : null; },
  get locked() { return host ? host.locked : null; },
  // {recording, transcription, consentPolicy, consentRequired, by, consentPending, busy,
  //  banner: {mode: hidden|on|stopped, text, detail, canContinue}}
  get recordingState() { return { ...session.recording.snapshot(), banner: { ...recBanner.view } }; },
  consent: (decision) => session.recording.consent(decision),
  announcementStats: () => session.announcementStats(),
  stats: () => session.stats(),
  publishStats: () => session.publishStats(),
  publishEncodings: () => session.publishEncodings(),
  inboundBytes: () => session.inboundBytes(),
  // {participant_id: {quality, score}} as the server's `connection_quality` said, and every
  // such entry received ([{participant_id, quality, score}], the newest last).
  connectionQuality: () => Object.fromEntries(session.connectionQuality.levels),
  connectionQualityHistory: () => session.connectionQuality.history.map((e) => ({ ...e })),
  freezeReportsSent: () => session.freezes.sent,
  selectedCandidates: () => selectedLocalCandidates([session.pubPc, session.subPc]),  // [publish, subscribe]
  chatMessages: () => session.chat.map((m) => ({ seq: m.seq, name: m.name, text: m.text })),
  participants: () => [...session.participants.values()].map((p) => ({ ...p })),
  waitingRoom: () => session.waitingRoom.map((p) => ({ ...p })),
  shareScreen: (stream) => session.shareScreen(stream),
  stopScreen: () => session.stopScreen(),
  setMuted: (source, muted) => session.setMuted(source, muted),
  leave: () => session.leave(),
  simulateDisconnect: () => session.simulateDisconnect(),
  hostActions: {
    admit: (pid) => requireHost().admit(pid).finally(renderAll),
    deny: (pid) => requireHost().deny(pid).finally(renderAll),
    admitAll: () => requireHost().admitAll().finally(renderAll),
    remove: (pid) => requireHost().remove(pid).finally(renderAll),
    mute: (pid, source, muted = true) => requireHost().mute(pid, source, muted).finally(renderAll),
    promote: (pid) => requireHost() && session.setSpeaker(pid, true),
    demote: (pid) => requireHost() && session.setSpeaker(pid, false),
    lock: (locked) => requireHost().lock(locked).finally(renderAll),
    end: () => requireHost().end(),
    startRecording: () => session.recording.command('recording', 'start'),
    stopRecording: () => session.recording.command('recording', 'stop'),
    startTranscription: () => session.recording.command('transcription', 'start'),
    stopTranscription: () => session.recording.command('transcription', 'stop'),
  },
};

// ---------------------------------------------------------------- screens

function showOnly(section) {
  for (const id of ['prejoin', 'waiting', 'ended']) $(id).hidden = id !== section;
  const inRoom = section === 'room';
  $('room').hidden = !inRoom;
  $('controls').hidden = !inRoom;
  document.body.classList.toggle('in-room', inRoom);
  if (!inRoom) $('knock').hidden = true;
}

function showEnded({ title, detail = '', icon = 'door', rejoin = false, signIn = false, again = null }) {
  $('ended-icon').innerHTML = icons[icon] || '';
  $('ended-title').textContent = title;
  $('ended-detail').textContent = detail;
  $('rejoin').hidden = !rejoin;
  $('rejoin').textContent = again || 'Rejoin';
  $('rejoin').setAttribute('aria-label', again ? `${again}: join the meeting` : 'Rejoin the meeting');
  $('signin-again').hidden = !signIn;
  const toDashboard = session.role === 'host' && !signIn;
  $('ended-home').href = toDashboard ? '/host' : '/';
  $('ended-home').textContent = toDashboard ? 'Dashboard' : 'Home';
  showOnly('ended');
}

// Why a meeting ended (the `reason` of meeting_ended), for the people in it.
const BY_OPERATOR = 'The meeting was ended by the service operator.';
const END_REASONS = {
  ended_by_host: 'The host ended the meeting for everyone.',
  ended_by_operator: BY_OPERATOR,
  ended_by_admin: 'The meeting was ended by the account administrator.',
  customer_suspended: BY_OPERATOR,
  customer_deleted: BY_OPERATOR,
  host_suspended: BY_OPERATOR,
  host_deleted: BY_OPERATOR,
  meeting_deleted: 'The meeting was deleted.',
  duration_limit: 'The meeting reached its time limit.',
  server_restart: 'The server restarted.',
};

// The screen shown once the session is over, worded after how it ended.
function endedScreen(ended) {
  const { kind, reason, code } = ended || { kind: 'left' };
  switch (kind) {
    case 'left':
      if (code === 'left_recording') {
        return { title: 'You left the meeting', rejoin: true,
          detail: 'You left because the meeting is being recorded or transcribed. You can rejoin while it is on.' };
      }
      return { title: 'You left the meeting', detail: 'You can rejoin while the meeting is on.', rejoin: true };
    case 'denied':
      return { title: 'The host did not let you in', detail: 'You were not admitted to this meeting.', icon: 'close' };
    case 'removed':
      return { title: 'You were removed from the meeting', detail: 'The host removed you. You cannot join this meeting again.', icon: 'removeUser' };
    case 'meeting_ended':
      return { title: 'The meeting has ended', detail: END_REASONS[code] || END_REASONS[reason] || 'Thanks for joining.', icon: 'stop' };
    case 'signed_out':
      return { title: 'You were signed out', detail: sessionEndedText(code || reason || ''), icon: 'signOut', signIn: true };
    case 'replaced':
      return { title: 'You joined from another window', detail: reason, rejoin: true };
    case 'refused':
      if (code === 'meeting_full') return fullMeeting(reason);
      return { title: 'Could not join the meeting', detail: joinErrorText(new ApiError(403, code, reason)), rejoin: code !== 'removed' };
    default:
      return { title: 'Disconnected from the meeting', detail: reason || '', rejoin: true };
  }
}

// The meeting holds as many as its limit allows (the operator's cap or the customer's):
// a page of its own, with the server's words (how many it holds) and a way to try again.
function fullMeeting(serverText) {
  return {
    title: 'This meeting is full', icon: 'people', rejoin: true, again: 'Try again',
    detail: `${joinErrorText(new ApiError(403, 'meeting_full', serverText)).replace(/\.?$/, '.')} `
      + 'You can try again when someone leaves.',
  };
}

const STATUS_TEXT = {
  idle: 'Not joined', joining: 'Joining…', waiting: 'Waiting', joined: 'Connected',
  reconnecting: 'Reconnecting…', left: 'Left',
};

function onState(event) {
  const { state } = event.detail;
  $('status').textContent = STATUS_TEXT[state] || state;
  $('status').dataset.state = state;
  $('status').hidden = state === 'idle';
  $('banner').hidden = state !== 'reconnecting';
  if (state === 'reconnecting') $('banner-text').textContent = 'Reconnecting…';
  if (state === 'waiting' || ((state === 'reconnecting' || state === 'joining') && session.waitingReason)) {
    showWaiting();
  } else if (state === 'joining' || state === 'joined' || state === 'reconnecting') {
    showOnly('room');
    if (state === 'joined') onJoinedRoom();
  } else if (state === 'left') {
    if (session.ended && session.ended.kind === 'signed_out') clearHostSession(sessionEndedText(session.ended.code || 'signed_in_elsewhere'));
    showEnded(endedScreen(session.ended));
    $('copy-link').hidden = !session.ended || session.ended.kind !== 'left';
    ui.blockedAudio.clear();
    $('audio-unlock').hidden = true;
    stopPreview();
  }
  renderAll();
}

function onJoinedRoom() {
  if (WIDE_LAYOUT.matches && !ui.sideChosen) setSide(true, ui.tab);
  if (session.role === 'host' && !host) {
    host = new HostControls(session, ui.number, { onLockChange: renderHostControls });
    host.loadParticipants().then(renderPeople);
    new IngestPanel(host, ui.number).start();
    host.loadMeeting().then((meeting) => {
      if (!meeting) return;
      setTitle(meeting.title);
      ui.joinUrl = meeting.join_url || null;
    });
  }
  stopPreview();
}

// ---------------------------------------------------------------- waiting screen

function showWaiting() {
  const forHost = session.waitingReason === 'waiting_for_host';
  $('waiting-title').textContent = forHost ? 'Waiting for the host to start this meeting'
    : 'Waiting for the host to let you in';
  $('waiting-badge').textContent = forHost ? 'Not started yet' : 'Waiting room';
  $('waiting-detail').textContent = forHost
    ? `${ui.title ? `“${ui.title}” has not started yet. ` : ''}This page moves on by itself once it starts.`
    : `${ui.title ? `You asked to join “${ui.title}”. ` : ''}The host has been told you are here.`;
  showOnly('waiting');
  const video = session.localTracks('camera')[0] || null;
  const preview = $('preview-video');
  const current = preview.srcObject ? preview.srcObject.getTracks()[0] : null;
  if (current !== video) preview.srcObject = video ? new MediaStream([video]) : null;
  if (video) preview.play().catch(() => {});
  $('preview-avatar').textContent = initials(session.name);
  $('preview-avatar').style.background = colorFor(session.name);
  renderWaitingControls();
}

function renderWaitingControls() {
  const micOff = session.muted.microphone || !session.hasLocal('microphone');
  const camOff = session.muted.camera || !session.hasLocal('camera');
  $('waiting-mic').innerHTML = `${icons[micOff ? 'micOff' : 'mic']}<span>${micOff ? 'Unmute' : 'Mute'}</span>`;
  $('waiting-mic').setAttribute('aria-label', micOff ? 'Unmute microphone' : 'Mute microphone');
  $('waiting-mic').disabled = !session.hasLocal('microphone');
  $('waiting-camera').innerHTML = `${icons[camOff ? 'cameraOff' : 'camera']}<span>${camOff ? 'Start video' : 'Stop video'}</span>`;
  $('waiting-camera').setAttribute('aria-label', camOff ? 'Turn camera on' : 'Turn camera off');
  $('waiting-camera').disabled = !session.hasLocal('camera');
  $('preview-box').classList.toggle('has-video', !camOff);
}

function stopPreview() {
  $('preview-video').srcObject = null;
}

$('waiting-mic').addEventListener('click', () => session.setMuted('microphone', !session.muted.microphone));
$('waiting-camera').addEventListener('click', () => session.setMuted('camera', !session.muted.camera));
$('waiting-leave').addEventListener('click', () => session.leave());

// ---------------------------------------------------------------- controls

// The label says what a click does ("Unmute microphone"), so no aria-pressed on top of it.
function setControl(button, { icon, label, aria, disabled, off }) {
  button.innerHTML = `${icons[icon]}<span class="ctl-label">${label}</span>`;
  button.setAttribute('aria-label', aria);
  button.title = aria;
  button.disabled = !!disabled;
  button.classList.toggle('off', !!off);
}

function renderControls() {
  const mic = session.hasLocal('microphone');
  const cam = session.hasLocal('camera');
  const micMuted = session.muted.microphone || !mic;
  const camMuted = session.muted.camera || !cam;
  const micByHost = session.hostMuted.has('microphone');
  const camByHost = session.hostMuted.has('camera');
  setControl($('toggle-mic'), {
    icon: micMuted ? 'micOff' : 'mic', label: micByHost ? 'Host muted' : micMuted ? 'Unmute' : 'Mute',
    aria: micByHost ? 'The host muted your microphone' : micMuted ? 'Unmute microphone' : 'Mute microphone',
    disabled: !mic, off: micMuted,
  });
  setControl($('toggle-camera'), {
    icon: camMuted ? 'cameraOff' : 'camera', label: camByHost ? 'Host stopped' : camMuted ? 'Start video' : 'Stop video',
    aria: camByHost ? 'The host turned off your camera' : camMuted ? 'Turn camera on' : 'Turn camera off',
    disabled: !cam, off: camMuted,
  });
  const sharing = !!session.screenStream;
  const canShare = !!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  setControl($('toggle-screen'), {
    icon: sharing ? 'screenOff' : 'screen', label: sharing ? 'Stop sharing' : 'Share screen',
    aria: sharing ? 'Stop sharing your screen' : 'Share your screen',
    disabled: !canShare || session.state !== 'joined', off: false,
  });
  $('toggle-screen').classList.toggle('active', sharing);
  if (session.state === 'waiting') renderWaitingControls();
  renderHostControls();
}

function renderHostControls() {
  renderRecordingControls();  // participants may have the transcription button too
  const isHost = !!host && session.state !== 'left';
  $('toggle-lock').hidden = !isHost;
  $('viewer-link').hidden = !isHost;
  $('end-for-all').hidden = !isHost;
  $('lock-chip').hidden = !isHost || !host.locked;
  if (!isHost) return;
  setControl($('toggle-lock'), {
    icon: host.locked ? 'lock' : 'unlock', label: host.locked ? 'Unlock' : 'Lock',
    aria: host.locked ? 'Unlock the meeting: let new people join' : 'Lock the meeting: nobody new can join',
    disabled: host.busy.has('lock') || session.state !== 'joined', off: false,
  });
  $('toggle-lock').classList.toggle('active', host.locked);
  setControl($('viewer-link'), {
    icon: 'people', label: 'Viewer link', aria: 'Make a viewer link (WHEP) for people who only watch',
    disabled: host.busy.has('viewer-link') || session.state !== 'joined', off: false,
  });
}

// WHEP viewers are not participants: a count in the top bar, their labels as its title.
function renderViewers() {
  const chip = $('viewers-chip');
  const count = session.viewers.length;
  chip.hidden = count === 0 || session.state !== 'joined';
  chip.textContent = `${count} watching`;
  chip.title = session.viewers.map((v) => v.label).join(', ');
}

// The host's Start/Stop recording and transcription buttons (transcription also for
// participants when the customer allows it: `joined` says so).
function renderRecordingControls() {
  const isHost = !!host && session.state !== 'left';
  const control = session.recording;
  for (const kind of ['recording', 'transcription']) {
    const button = $(`toggle-${kind}`);
    const allowed = isHost || (kind === 'transcription' && session.mayTranscribe && session.state === 'joined');
    button.hidden = !allowed;
    if (!allowed) continue;
    const on = control.state[kind];
    setControl(button, {
      icon: kind === 'recording' ? (on ? 'recordStop' : 'record') : 'transcript',
      label: kind === 'recording' ? (on ? 'Stop recording' : 'Record') : (on ? 'Stop transcript' : 'Transcribe'),
      aria: `${on ? 'Stop' : 'Start'} ${kind}`,
      disabled: control.busy.has(kind) || session.state !== 'joined', off: false,
    });
    button.classList.toggle('recording-on', on);
    button.dataset.on = String(on);
  }
}

async function recordingCommand(kind) {
  const action = session.recording.state[kind] ? 'stop' : 'start';
  try {
    await session.recording.command(kind, action);
  } catch (err) {
    toast(commandErrorText(kind, action, err), 'error');
  }
}

$('toggle-recording').addEventListener('click', () => recordingCommand('recording'));
$('toggle-transcription').addEventListener('click', () => recordingCommand('transcription'));

$('toggle-mic').addEventListener('click', () => session.setMuted('microphone', !session.muted.microphone));
$('toggle-camera').addEventListener('click', () => session.setMuted('camera', !session.muted.camera));
$('toggle-screen').addEventListener('click', async () => {
  try {
    if (session.screenStream) await session.stopScreen();
    else await session.shareScreen();
  } catch (err) {
    if (err && err.name !== 'NotAllowedError' && err.name !== 'AbortError') toast(`Screen sharing failed: ${err.message}`, 'error');
  }
});
$('leave').addEventListener('click', () => session.leave());
$('rejoin').addEventListener('click', () => rejoin());
$('toggle-lock').addEventListener('click', () => {
  if (!host) return;
  const locking = !host.locked;
  host.act(() => host.lock(locking), renderAll,
    locking ? 'Meeting locked: nobody new can join.' : 'Meeting unlocked.');
  renderHostControls();
});
$('end-for-all').addEventListener('click', () => host && host.confirmEnd(renderAll));
$('viewer-link').addEventListener('click', () => host && host.showViewerLink(renderAll));
$('knock-view').addEventListener('click', () => {
  $('knock').hidden = true;
  ui.sideChosen = true;
  setSide(true, 'people');
});

// ---------------------------------------------------------------- side panel

function setSide(open, tab = ui.tab) {
  ui.side = open;
  ui.tab = tab;
  $('side').hidden = !open;
  document.body.classList.toggle('side-open', open);
  $('chat-panel').hidden = tab !== 'chat';
  $('people-panel').hidden = tab !== 'people';
  $('tab-chat').setAttribute('aria-selected', String(tab === 'chat'));
  $('tab-people').setAttribute('aria-selected', String(tab === 'people'));
  const chatShown = open && tab === 'chat';
  const peopleShown = open && tab === 'people';
  $('toggle-chat').setAttribute('aria-expanded', String(chatShown));
  $('toggle-chat').setAttribute('aria-label', chatShown ? 'Hide chat' : 'Show chat');
  $('toggle-chat').classList.toggle('active', chatShown);
  $('toggle-people').setAttribute('aria-expanded', String(peopleShown));
  $('toggle-people').setAttribute('aria-label', peopleShown ? 'Hide participants' : 'Show participants');
  $('toggle-people').classList.toggle('active', peopleShown);
  if (chatShown) {
    ui.unread = 0;
    renderBadge();
    scrollChatToEnd();
  }
  if (host) host.renderKnock(renderAll);   // the waiting list in view makes the card redundant
}

function toggleSide(tab) {
  ui.sideChosen = true;
  if (ui.side && ui.tab === tab) setSide(false, tab);
  else setSide(true, tab);
}

$('toggle-chat').addEventListener('click', () => toggleSide('chat'));
$('toggle-people').addEventListener('click', () => toggleSide('people'));
$('tab-chat').addEventListener('click', () => setSide(true, 'chat'));
$('tab-people').addEventListener('click', () => setSide(true, 'people'));
$('side-close').addEventListener('click', () => { ui.sideChosen = true; setSide(false); });

function renderBadge() {
  const badge = $('chat-badge');
  badge.hidden = ui.unread === 0;
  badge.textContent = ui.unread > 9 ? '9+' : String(ui.unread);
}

// ---------------------------------------------------------------- chat

function chatItem(m) {
  const mine = m.participant_id === session.participantId;
  return el('li', { class: `chat-msg${mine ? ' mine' : ''}`, dataset: { testid: 'chat-message', seq: String(m.seq) } },
    el('div', { class: 'chat-meta' },
      el('span', { class: 'chat-name', dataset: { testid: 'chat-name' } }, mine ? `${m.name} (you)` : m.name),
      el('time', { class: 'chat-time', datetime: new Date(m.ts || Date.now()).toISOString() }, formatTime(m.ts))),
    el('p', { class: 'chat-text', dataset: { testid: 'chat-text' } }, m.text));
}

function scrollChatToEnd() {
  const list = $('chat-list');
  list.scrollTop = list.scrollHeight;
}

function renderChat() {
  const list = $('chat-list');
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...session.chat.map(chatItem));
  if (session.chat.length === 0) list.append(el('li', { class: 'chat-empty' }, 'No messages yet.'));
  if (atEnd) scrollChatToEnd();
}

function onChat(event) {
  const { message } = event.detail;
  renderChat();
  const chatVisible = ui.side && ui.tab === 'chat';
  if (message && !chatVisible && message.participant_id !== session.participantId) {
    ui.unread += 1;
    renderBadge();
  }
  if (message && message.participant_id === session.participantId) scrollChatToEnd();
}

$('chat-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('chat-input');
  if (!input.value.trim()) return;
  if (session.sendChat(input.value)) input.value = '';
  else toast('Not connected: the message was not sent.', 'warn');
});

// ---------------------------------------------------------------- people

function personItem(person, you) {
  const { participant_id: id, name } = person;
  const muted = person.muted || {};
  const label = you ? `${name} (you)` : person.role === 'host' ? `${name} (host)` : name;
  const withActions = host && !you && person.role !== 'host';
  return el('li', { class: 'person', dataset: { testid: 'participant', participantId: id } },
    el('span', { class: 'person-avatar', style: `background:${colorFor(id)}`, 'aria-hidden': 'true' }, initials(name)),
    el('span', { class: 'person-name' }, label),
    withActions ? null : el('span', { class: 'person-flags' },
      muted.microphone ? el('span', { role: 'img', 'aria-label': 'Microphone muted', html: icons.micOff }) : null,
      muted.camera ? el('span', { role: 'img', 'aria-label': 'Camera off', html: icons.cameraOff }) : null),
    withActions ? host.personActions(person, renderAll) : null,
    withActions ? stagePanel.personAction(person) : null);
}

function renderPeople() {
  const items = [];
  if (session.state === 'joined' || session.state === 'reconnecting') {
    items.push(personItem({ participant_id: session.participantId || 'self', name: session.name, muted: session.muted,
      role: session.role }, true));
  }
  const others = [...session.participants.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const p of others) items.push(personItem(p, false));
  $('people-list').replaceChildren(...items);
  const waiting = host ? session.waitingRoom.length : 0;
  $('people-count').textContent = waiting ? `${items.length} · ${waiting} waiting` : String(items.length);
  $('in-meeting-head').hidden = waiting === 0;
  if (host) host.renderWaiting(renderAll);
  else $('waiting-section').hidden = true;
  const peopleButton = $('toggle-people');
  peopleButton.classList.toggle('attention', waiting > 0);
  peopleButton.dataset.waiting = String(waiting);
}

// The host muted one of our sources: say so plainly (the buttons already show it).
function onHostMute(event) {
  const { source, muted } = event.detail;
  const what = source === 'microphone' ? 'microphone' : 'camera';
  if (muted) {
    toast(`The host ${source === 'microphone' ? 'muted your microphone' : 'turned off your camera'}. ` +
      `Only the host can let you turn it back on.`, 'warn');
  } else {
    toast(`The host lets you turn your ${what} back on when you want to.`, 'info');
  }
}

// ---------------------------------------------------------------- audio autoplay

// Browsers refuse to play sound before the user has interacted with the page (an
// auto-join from a link): offer one click that starts every remote audio element.
function audioBlocked(audioEl) {
  ui.blockedAudio.add(audioEl);
  $('audio-unlock').hidden = false;
}

function unlockAudio() {
  for (const audioEl of ui.blockedAudio) audioEl.play().catch(() => {});
  ui.blockedAudio.clear();
  $('audio-unlock').hidden = true;
}

$('audio-unlock').addEventListener('click', unlockAudio);
document.addEventListener('pointerdown', () => { if (ui.blockedAudio.size) unlockAudio(); }, true);

// ---------------------------------------------------------------- wiring

function renderAll() {
  board.render(session);
  renderControls();
  renderPeople();
  renderViewers();
  stagePanel.render();
}

session.addEventListener('state', onState);
session.addEventListener('participants', renderAll);
session.addEventListener('speaker', () => board.render(session));
session.addEventListener('viewers', renderViewers);
session.addEventListener('quality', () => board.render(session));
session.addEventListener('connection', () => board.render(session));
session.addEventListener('media', () => {
  board.render(session);
  attach($('announcement-audio'), session.announcementTrack(), audioBlocked);
});
session.addEventListener('recording', renderRecordingControls);
session.addEventListener('local', renderAll);
session.addEventListener('chat', onChat);
session.addEventListener('waitingroom', renderPeople);
session.addEventListener('meeting', (event) => { if (host) host.setLocked(event.detail.locked); });
session.addEventListener('hostmute', onHostMute);
session.addEventListener('stage', renderAll);
session.addEventListener('notice', (event) => toast(event.detail.text, event.detail.level));
window.addEventListener('pagehide', () => session.leave());

// ---------------------------------------------------------------- joining

function setMeetingNumber(number) {
  ui.number = number;
  session.meetingId = number;
  session.wsUrl = signalingUrl(number);
  $('meeting-id').textContent = formatMeetingNumber(number);
  $('copy-link').hidden = false;
}

function setTitle(title) {
  if (!title) return;
  ui.title = title;
  $('meeting-title').textContent = title;
  document.title = `${title} · Conclave`;
}

// The form fits how we got here: a link asks only for a name; /m/{number} asks for the
// passcode too (the number is filled in); /join asks for everything.
function showJoinForm({ focus = true } = {}) {
  const withLink = !!ui.linkToken && !!ui.number;
  $('number-field').hidden = withLink;
  $('passcode-field').hidden = withLink;
  if (ui.number && !$('number-input').value) $('number-input').value = formatMeetingNumber(ui.number);
  $('prejoin-title').textContent = ui.title ? `Join “${ui.title}”` : 'Join a meeting';
  $('prejoin-detail').textContent = withLink
    ? 'You were invited with a link. Tell the others your name.'
    : 'Enter the Meeting ID and passcode from your invitation.';
  showOnly('prejoin');
  if (!focus) return;
  const firstEmpty = ['number-input', 'passcode-input', 'name-input']
    .map($).find((input) => !input.closest('[hidden]') && !input.value.trim());
  (firstEmpty || $('join-button')).focus();
}

function showJoinError(text) {
  $('join-error').textContent = text || '';
  $('join-error').hidden = !text;
}

// Reads and checks the form: its values, or {error, field} naming what is missing.
function formValues() {
  const name = $('name-input').value.trim();
  const withLink = !!ui.linkToken && !!ui.number;
  const number = withLink ? ui.number : meetingDigits($('number-input').value);
  const passcode = $('passcode-input').value.trim();
  if (!withLink && !number) return { error: 'Enter the 11-digit Meeting ID, like 123-4567-8901.', field: 'number-input' };
  if (!withLink && !passcode) return { error: 'Enter the passcode from your invitation.', field: 'passcode-input' };
  if (!name) return { error: 'Enter your name.', field: 'name-input' };
  return { name: name.slice(0, 64), number, passcode, linkToken: withLink ? ui.linkToken : null };
}

async function submitJoin() {
  if (ui.joining || session.active) return;
  const values = formValues();
  if (values.error) {
    showJoinError(values.error);
    $(values.field).focus();
    return;
  }
  showJoinError('');
  rememberName(values.name);
  const credentials = new ParticipantCredentials(values.number, values);
  ui.joining = true;
  $('join-button').disabled = true;
  $('join-button').textContent = 'Joining…';
  try {
    const grant = await credentials.request();
    if (values.number !== ui.number) setMeetingNumber(values.number);
    if (place.isJoinPage || !ui.linkToken) {
      // The address becomes the meeting's own (never the passcode); a reload asks again.
      history.replaceState(null, '', meetingPath(values.number, ui.linkToken));
    }
    setTitle(grant.title);
    if (grant.status === 'waiting_for_host' || grant.status === 'waiting_room') session.waitingReason = grant.status;
    session.credentials = credentials;
    await session.join(values.name, grant);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'meeting_full') {
      session.credentials = credentials;   // "Try again" asks with the same form
      showEnded(fullMeeting(err.message));
      return;
    }
    showJoinError(joinErrorText(err));
    if (err instanceof ApiError && err.code === 'invalid_credentials') $('passcode-input').select();
  } finally {
    ui.joining = false;
    $('join-button').disabled = false;
    $('join-button').textContent = 'Join';
  }
}

// The host arrives from the dashboard's Start with a join token for this meeting.
async function joinAsHost(credentials) {
  const signedIn = hostSession();
  const name = (signedIn && signedIn.host && signedIn.host.name) || rememberedName() || 'Host';
  session.credentials = credentials;
  try {
    const grant = await credentials.get({ fresh: !credentials.grant });
    await session.join(name, grant);
  } catch (err) {
    showEnded({ title: 'Could not start the meeting', detail: err.message, icon: 'stop', rejoin: false });
  }
}

function rejoin() {
  if (session.role === 'host' && session.credentials instanceof HostCredentials) {
    session.credentials.grant = null;   // ask the server again: the meeting may be over
    joinAsHost(session.credentials);
    return;
  }
  showJoinForm();
  if (session.credentials instanceof ParticipantCredentials) submitJoin();
}

$('join-form').addEventListener('submit', (event) => {
  event.preventDefault();
  submitJoin();
});

$('copy-link').addEventListener('click', async () => {
  const link = ui.joinUrl || `${window.location.origin}${meetingPath(ui.number, ui.linkToken)}`;
  toast(await copyText(link) ? 'Meeting link copied.' : link, 'info');
});

// {title, status} of the meeting, which the server tells only to holders of its link
// token: null when the link is not valid (or the meeting gone), undefined when unknown.
async function publicInfo(number, linkToken) {
  try {
    return await api(`/meetings/${number}/public?t=${encodeURIComponent(linkToken)}`);
  } catch (err) {
    return err instanceof ApiError && err.status === 404 ? null : undefined;
  }
}

async function boot() {
  fillIcons();
  renderAll();
  renderChat();
  setSide(false, 'chat');
  $('name-input').value = place.name ?? rememberedName();
  if (!place.number) {
    $('copy-link').hidden = true;
    if (place.rawNumber) {
      showEnded({ title: 'Meeting not found', detail: 'A Meeting ID has 11 digits, like 123-4567-8901.', icon: 'close' });
      return;
    }
    showJoinForm();   // /join: the Meeting ID comes from the form
    return;
  }
  setMeetingNumber(place.number);
  const hostCredentials = HostCredentials.fromStorage(place.number);
  if (hostCredentials && hostSession()) {
    joinAsHost(hostCredentials);
    return;
  }
  if (!ui.linkToken) {
    showJoinForm();   // the passcode proves the invitation; the server says nothing before
    return;
  }
  const info = await publicInfo(place.number, ui.linkToken);
  if (info === null) {
    // Not a link of this meeting (any more): fall back to the Meeting ID and passcode.
    ui.linkToken = null;
    history.replaceState(null, '', meetingPath(place.number));
    showJoinForm();
    showJoinError('This invitation link is not valid (any more). Enter the passcode from your invitation instead.');
    return;
  }
  if (info && info.title) setTitle(info.title);
  if (info && info.attendees_publish === false) {
    $('prejoin-media-hint').textContent = 'This is a webinar: you join to watch and listen, and your browser '
      + 'asks for no camera or microphone. Raise your hand to ask to speak.';
  }
  if (place.name && place.name.trim()) {
    showJoinForm({ focus: false });
    submitJoin();
  } else {
    showJoinForm();
  }
}

boot();
