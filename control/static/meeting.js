// The meeting page (/m/{meeting_id}): name prompt, tiles, controls, chat and people,
// and the `window.conclave` test hook. The protocol itself lives in session.js.

import { MeetingSession } from './session.js';
import { TileBoard } from './tiles.js';
import { icons } from './icons.js';
import { el, fillIcons, toast, copyText, formatTime, initials, colorFor } from './ui.js';

const NAME_KEY = 'conclave.name';
const WIDE_LAYOUT = window.matchMedia('(min-width: 900px)');
const $ = (id) => document.getElementById(id);

function meetingIdFromPath(pathname) {
  const match = /^\/m\/([^/]+)\/?$/.exec(pathname);
  return match ? decodeURIComponent(match[1]) : null;
}

function rememberedName() {
  try { return localStorage.getItem(NAME_KEY) || ''; } catch (e) { return ''; }
}

function rememberName(name) {
  try { localStorage.setItem(NAME_KEY, name); } catch (e) { /* private mode */ }
}

const meetingId = meetingIdFromPath(window.location.pathname);
const session = new MeetingSession(meetingId || 'none');
const ui = { side: false, tab: 'chat', unread: 0, blockedAudio: new Set() };
const board = new TileBoard($('grid'), $('screens'), { onAudioBlocked: audioBlocked });

// The test hook: always present, only calls what the buttons call.
window.conclave = {
  get state() { return session.state; },
  get participantId() { return session.participantId; },
  get reconnects() { return session.reconnects; },
  stats: () => session.stats(),
  publishStats: () => session.publishStats(),
  chatMessages: () => session.chat.map((m) => ({ seq: m.seq, name: m.name, text: m.text })),
  participants: () => [...session.participants.values()].map((p) => ({ ...p })),
  shareScreen: (stream) => session.shareScreen(stream),
  stopScreen: () => session.stopScreen(),
  setMuted: (source, muted) => session.setMuted(source, muted),
  leave: () => session.leave(),
  simulateDisconnect: () => session.simulateDisconnect(),
};

// ---------------------------------------------------------------- screens

function showOnly(section) {
  for (const id of ['prejoin', 'ended']) $(id).hidden = id !== section;
  const inRoom = section === 'room';
  $('room').hidden = !inRoom;
  $('controls').hidden = !inRoom;
  document.body.classList.toggle('in-room', inRoom);
}

function showEnded(title, detail, canRejoin = true) {
  $('ended-title').textContent = title;
  $('ended-detail').textContent = detail || '';
  $('rejoin').hidden = !canRejoin;
  showOnly('ended');
}

const STATUS_TEXT = {
  idle: 'Not joined', joining: 'Joining…', joined: 'Connected', reconnecting: 'Reconnecting…', left: 'Left',
};

function onState(event) {
  const { state, reason } = event.detail;
  $('status').textContent = STATUS_TEXT[state] || state;
  $('status').dataset.state = state;
  $('banner').hidden = state !== 'reconnecting';
  if (state === 'reconnecting') $('banner-text').textContent = 'Reconnecting…';
  if (state === 'joining') ui.everJoined = false;
  if (state === 'joined') ui.everJoined = true;
  if (state === 'joining' || state === 'joined' || state === 'reconnecting') {
    showOnly('room');
    if (state === 'joined' && WIDE_LAYOUT.matches && !ui.sideChosen) setSide(true, ui.tab);
  } else if (state === 'left') {
    if (reason) showEnded(ui.everJoined ? 'Disconnected from the meeting' : 'Could not join the meeting', reason);
    else showEnded('You left the meeting', 'Rejoin whenever you like.');
    ui.blockedAudio.clear();
    $('audio-unlock').hidden = true;
  }
  renderAll();
}

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
  setControl($('toggle-mic'), {
    icon: micMuted ? 'micOff' : 'mic', label: micMuted ? 'Unmute' : 'Mute',
    aria: micMuted ? 'Unmute microphone' : 'Mute microphone', disabled: !mic, off: micMuted,
  });
  setControl($('toggle-camera'), {
    icon: camMuted ? 'cameraOff' : 'camera', label: camMuted ? 'Start video' : 'Stop video',
    aria: camMuted ? 'Turn camera on' : 'Turn camera off', disabled: !cam, off: camMuted,
  });
  const sharing = !!session.screenStream;
  const canShare = !!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  setControl($('toggle-screen'), {
    icon: sharing ? 'screenOff' : 'screen', label: sharing ? 'Stop sharing' : 'Share screen',
    aria: sharing ? 'Stop sharing your screen' : 'Share your screen',
    disabled: !canShare || session.state !== 'joined', off: false,
  });
  $('toggle-screen').classList.toggle('active', sharing);
}

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
$('rejoin').addEventListener('click', () => startJoin(session.name || rememberedName()));

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

function personItem(id, name, muted, you) {
  return el('li', { class: 'person', dataset: { testid: 'participant', participantId: id } },
    el('span', { class: 'person-avatar', style: `background:${colorFor(id)}`, 'aria-hidden': 'true' }, initials(name)),
    el('span', { class: 'person-name' }, you ? `${name} (you)` : name),
    el('span', { class: 'person-flags' },
      muted.microphone ? el('span', { role: 'img', 'aria-label': 'Microphone muted', html: icons.micOff }) : null,
      muted.camera ? el('span', { role: 'img', 'aria-label': 'Camera off', html: icons.cameraOff }) : null));
}

function renderPeople() {
  const items = [];
  if (session.state !== 'left' && session.state !== 'idle') {
    items.push(personItem(session.participantId || 'self', session.name, session.muted, true));
  }
  const others = [...session.participants.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const p of others) items.push(personItem(p.participant_id, p.name, p.muted || {}, false));
  $('people-list').replaceChildren(...items);
  $('people-count').textContent = String(items.length);
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
}

session.addEventListener('state', onState);
session.addEventListener('participants', renderAll);
session.addEventListener('media', () => board.render(session));
session.addEventListener('local', renderAll);
session.addEventListener('chat', onChat);
session.addEventListener('notice', (event) => toast(event.detail.text, event.detail.level));
window.addEventListener('pagehide', () => {
  if (session.state === 'joined' || session.state === 'reconnecting') session.leave();
});

async function startJoin(name) {
  const trimmed = (name || '').trim();
  if (!trimmed) {
    showOnly('prejoin');
    $('name-input').focus();
    return;
  }
  rememberName(trimmed);
  try {
    await session.join(trimmed.slice(0, 64));
  } catch (err) {
    toast(`Could not join: ${err.message}`, 'error');
  }
}

$('join-form').addEventListener('submit', (event) => {
  event.preventDefault();
  startJoin($('name-input').value);
});

$('copy-link').addEventListener('click', async () => {
  const link = `${window.location.origin}/m/${encodeURIComponent(meetingId)}`;
  toast(await copyText(link) ? 'Meeting link copied.' : link, 'info');
});

// Returns the meeting's description, null if it does not exist, undefined if unknown.
async function meetingInfo(id) {
  try {
    const response = await fetch(`/api/v1/meetings/${encodeURIComponent(id)}`, { headers: { Accept: 'application/json' } });
    if (response.status === 404) return null;
    if (!response.ok) return undefined;
    return await response.json();
  } catch (e) {
    return undefined;
  }
}

async function boot() {
  fillIcons();
  renderAll();
  renderChat();
  setSide(false, 'chat');
  if (!meetingId) {
    $('copy-link').hidden = true;
    showEnded('No meeting here', 'The address should look like /m/<meeting id>.', false);
    return;
  }
  $('meeting-id').textContent = meetingId;
  const params = new URLSearchParams(window.location.search);
  const nameParam = params.get('name');
  $('name-input').value = nameParam ?? rememberedName();
  const info = await meetingInfo(meetingId);
  if (info === null) {
    $('copy-link').hidden = true;
    showEnded('Meeting not found', `There is no meeting with the id ${meetingId}. Check the link.`, false);
    return;
  }
  if (info && info.title) {
    $('meeting-title').textContent = info.title;
    document.title = `${info.title} · Conclave`;
  }
  if (nameParam && nameParam.trim()) startJoin(nameParam);
  else {
    showOnly('prejoin');
    $('name-input').focus();
  }
}

boot();
