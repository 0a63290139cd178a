// The host's page (/host): sign in with email and password, then the dashboard: schedule
// a meeting, see your meetings (Meeting ID, passcode, join link), Start / End / Delete.
// The host's session token lives in sessionStorage (this tab only, gone with it).

import {
  api, formatMeetingNumber, meetingDigits, generatePasscode,
  hostSession, saveHostSession, clearHostSession, takeSignoutReason, sessionEndedText, isSignedOutError,
} from './api.js';
import { startMeeting } from './joinflow.js';
import { icons } from './icons.js';
import { el, fillIcons, toast, copyText, confirmDialog } from './ui.js';

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 5000;   // the list, and whether this session still holds (signed in elsewhere)

const page = { meetings: [], busy: new Set(), errors: new Map(), timer: null, loading: false };

// ---------------------------------------------------------------- views

function showSignIn(reason = null) {
  clearInterval(page.timer);
  page.timer = null;
  $('dashboard-view').hidden = true;
  $('signin-view').hidden = false;
  $('who').hidden = true;
  $('sign-out').hidden = true;
  $('signin-reason').textContent = reason || '';
  $('signin-reason').hidden = !reason;
  document.title = 'Sign in · Conclave';
  $('email').focus();
}

function showDashboard(signedIn) {
  $('signin-view').hidden = true;
  $('dashboard-view').hidden = false;
  const hostInfo = signedIn.host || {};
  $('who').textContent = hostInfo.name ? `${hostInfo.name} · ${hostInfo.email || ''}` : (hostInfo.email || '');
  $('who').hidden = !$('who').textContent;
  $('sign-out').hidden = false;
  document.title = 'Your meetings · Conclave';
  resetScheduleForm();
  loadMeetings();
  clearInterval(page.timer);
  page.timer = setInterval(() => { if (!document.hidden) loadMeetings(); }, REFRESH_MS);
}

// A refused host token ends the dashboard: back to sign-in, saying why.
function signedOut(err) {
  clearHostSession();
  showSignIn(sessionEndedText(err));
}

// ---------------------------------------------------------------- sign in / out

function signInErrorText(err) {
  if (err.status === 429) return `Too many attempts. Try again in ${err.retryAfter ?? 60} seconds.`;
  switch (err.code) {
    case 'invalid_credentials': case 'unauthorized': return 'The email or password is not right.';
    case 'host_session_active': return 'This account is in use somewhere else. Sign out there first.';
    case 'account_suspended': case 'host_suspended': case 'customer_suspended': return 'This account is suspended.';
    default: return err.message;
  }
}

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const email = $('email').value.trim();
  const password = $('password').value;
  const error = $('signin-error');
  if (!email || !password) {
    error.textContent = 'Enter your email and password.';
    error.hidden = false;
    (email ? $('password') : $('email')).focus();
    return;
  }
  error.hidden = true;
  $('signin-button').disabled = true;
  try {
    const reply = await api('/auth/login', { method: 'POST', body: { email, password } });
    saveHostSession(reply.token, reply.host || { email });
    $('password').value = '';
    $('signin-reason').hidden = true;
    showDashboard(hostSession());
  } catch (err) {
    error.textContent = signInErrorText(err);
    error.hidden = false;
    $('password').select();
  } finally {
    $('signin-button').disabled = false;
  }
});

$('sign-out').addEventListener('click', async () => {
  const signedIn = hostSession();
  if (signedIn) {
    try { await api('/auth/logout', { method: 'POST', token: signedIn.token }); } catch (e) { /* gone already */ }
  }
  clearHostSession();
  showSignIn('You signed out.');
});

// ---------------------------------------------------------------- schedule

function pad(n) {
  return String(n).padStart(2, '0');
}

// The next half hour, as a datetime-local value.
function nextHalfHour(now = new Date()) {
  const t = new Date(now.getTime() + 30 * 60000);
  t.setMinutes(t.getMinutes() < 30 ? 30 : 60, 0, 0);
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}T${pad(t.getHours())}:${pad(t.getMinutes())}`;
}

function resetScheduleForm() {
  $('title').value = '';
  $('start').value = nextHalfHour();
  $('duration').value = '60';
  $('passcode').value = generatePasscode();
  $('waiting-room').checked = true;
  $('waiting-room-text').textContent = 'On';
  $('schedule-error').hidden = true;
}

$('new-passcode').addEventListener('click', () => { $('passcode').value = generatePasscode(); });
$('waiting-room').addEventListener('change', () => {
  $('waiting-room-text').textContent = $('waiting-room').checked ? 'On' : 'Off';
});

$('schedule-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const signedIn = hostSession();
  if (!signedIn) return signedOut(null);
  const error = $('schedule-error');
  const title = $('title').value.trim() || 'Meeting';
  const passcode = $('passcode').value.trim();
  const start = $('start').value ? new Date($('start').value) : null;
  if (start && Number.isNaN(start.getTime())) {
    error.textContent = 'The start time is not a valid date.';
    error.hidden = false;
    return;
  }
  const body = {
    title,
    duration_minutes: Number.parseInt($('duration').value, 10),
    waiting_room: $('waiting-room').checked,
  };
  if (start) body.start_time = start.toISOString();
  if (passcode) body.passcode = passcode;
  error.hidden = true;
  $('schedule-button').disabled = true;
  try {
    const meeting = await api('/meetings', { method: 'POST', body, token: signedIn.token });
    toast(`Scheduled “${meeting.title || title}”: ${formatMeetingNumber(meeting.meeting_number)}.`, 'info');
    resetScheduleForm();
    await loadMeetings();
  } catch (err) {
    if (isSignedOutError(err)) return signedOut(err);
    error.textContent = err.message;
    error.hidden = false;
  } finally {
    $('schedule-button').disabled = false;
  }
});

// ---------------------------------------------------------------- the list

async function loadMeetings() {
  const signedIn = hostSession();
  if (!signedIn || page.loading) return;
  page.loading = true;
  try {
    const reply = await api('/meetings', { token: signedIn.token });
    page.meetings = Array.isArray(reply) ? reply : (reply && reply.meetings) || [];
    $('list-error').hidden = true;
    renderMeetings();
  } catch (err) {
    if (isSignedOutError(err)) {
      signedOut(err);
      return;
    }
    $('list-error').textContent = `Could not load your meetings: ${err.message}`;
    $('list-error').hidden = false;
  } finally {
    page.loading = false;
  }
}

function digitsOf(meeting) {
  return meetingDigits(meeting.meeting_number) || String(meeting.meeting_number || '');
}

// start_time may be seconds since the epoch or an ISO 8601 string.
function startDate(meeting) {
  const value = meeting.start_time;
  if (value === null || value === undefined || value === '') return null;
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function durationText(minutes) {
  if (!minutes) return '';
  if (minutes < 60) return `${minutes} min`;
  const hours = minutes / 60;
  return Number.isInteger(hours) ? `${hours} hour${hours === 1 ? '' : 's'}` : `${Math.floor(hours)} h ${minutes % 60} min`;
}

function whenText(meeting) {
  const date = startDate(meeting);
  const parts = [];
  if (date) {
    parts.push(date.toLocaleString([], { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' }));
  } else {
    parts.push('No start time');
  }
  const duration = durationText(meeting.duration_minutes);
  if (duration) parts.push(duration);
  return parts.join(' · ');
}

const STATUS_LABEL = { scheduled: 'Scheduled', live: 'Live', ended: 'Ended', removed: 'Removed' };

// Live first, then upcoming by start time, then the rest (newest first, as the server sends).
function sortedMeetings() {
  const rank = (m) => (m.status === 'live' ? 0 : m.status === 'scheduled' ? 1 : 2);
  return [...page.meetings].map((m, i) => [m, i]).sort(([a, ia], [b, ib]) => {
    if (rank(a) !== rank(b)) return rank(a) - rank(b);
    if (rank(a) === 1) {
      const ta = startDate(a)?.getTime() ?? Infinity;
      const tb = startDate(b)?.getTime() ?? Infinity;
      if (ta !== tb) return ta - tb;
    }
    return ia - ib;
  }).map(([m]) => m);
}

function field(label, value, testid, extra = null) {
  return el('div', { class: 'meeting-field' },
    el('span', { class: 'label' }, label),
    el('code', { dataset: { testid } }, value),
    extra);
}

function actionButton(testid, label, icon, onClick, { primary = false, danger = false, busy = false } = {}) {
  const button = el('button', {
    type: 'button', class: `btn btn-small ${primary ? 'btn-primary' : danger ? 'btn-ghost btn-danger-text' : 'btn-ghost'}`,
    dataset: { testid },
  });
  button.innerHTML = `${icons[icon] || ''}<span>${label}</span>`;
  button.disabled = busy;
  button.addEventListener('click', onClick);
  return button;
}

function meetingItem(meeting) {
  const digits = digitsOf(meeting);
  const status = meeting.status || 'scheduled';
  const live = status === 'live';
  const busy = page.busy.has(digits);
  const link = meeting.join_url || `${window.location.origin}/m/${digits}`;
  const linkInput = el('input', { readonly: true, value: link, dataset: { testid: 'meeting-link' },
    'aria-label': `Join link of ${meeting.title}` });
  linkInput.value = link;
  linkInput.addEventListener('focus', () => linkInput.select());
  const copy = actionButton('copy-link', 'Copy', 'copy', async () => {
    toast(await copyText(link) ? 'Join link copied.' : 'Copy failed: select the link and copy it.', 'info');
  });
  const actions = [];
  actions.push(actionButton('start-meeting', live ? 'Join' : 'Start', 'play', () => start(meeting), { primary: true, busy }));
  if (live) actions.push(actionButton('end-meeting', 'End', 'stop', () => end(meeting), { busy }));
  actions.push(actionButton('delete-meeting', 'Delete', 'trash', () => remove(meeting), { danger: true, busy }));
  const error = page.errors.get(digits);
  return el('li', { class: `meeting${live ? ' is-live' : ''}`, dataset: { testid: 'meeting', meetingNumber: digits, status } },
    el('div', { class: 'meeting-head' },
      el('h3', { class: 'meeting-name', dataset: { testid: 'meeting-title' } }, meeting.title || 'Meeting'),
      el('span', { class: `chip chip-${status}`, dataset: { testid: 'meeting-status' } }, STATUS_LABEL[status] || status)),
    el('p', { class: 'meeting-when' }, whenText(meeting), meeting.waiting_room === false ? ' · no waiting room' : ' · waiting room'),
    el('div', { class: 'meeting-fields' },
      field('Meeting ID', formatMeetingNumber(meeting.meeting_number), 'meeting-number'),
      field('Passcode', meeting.passcode || '—', 'meeting-passcode')),
    el('div', { class: 'row meeting-link' }, linkInput, copy),
    error ? el('p', { class: 'form-error', role: 'alert', dataset: { testid: 'meeting-error' } }, error) : null,
    el('div', { class: 'row meeting-actions' }, ...actions));
}

function renderMeetings() {
  const visible = sortedMeetings().filter((m) => m.status !== 'removed');
  $('meetings').replaceChildren(...visible.map(meetingItem));
  $('meetings-empty').hidden = visible.length > 0;
}

// ---------------------------------------------------------------- actions

async function withMeeting(meeting, action) {
  const signedIn = hostSession();
  if (!signedIn) return signedOut(null);
  const digits = digitsOf(meeting);
  page.busy.add(digits);
  page.errors.delete(digits);
  renderMeetings();
  try {
    await action(signedIn.token, digits);
  } catch (err) {
    if (isSignedOutError(err)) return signedOut(err);
    page.errors.set(digits, err.message);
    toast(err.message, 'error');
  } finally {
    page.busy.delete(digits);
    renderMeetings();
  }
  return undefined;
}

// Start (or go back into) the meeting: the join token goes to the meeting page.
function start(meeting) {
  return withMeeting(meeting, async (token, digits) => {
    await startMeeting(digits, token);
    window.location.assign(`/m/${digits}`);
  });
}

async function end(meeting) {
  const ok = await confirmDialog({
    title: `End “${meeting.title || 'Meeting'}” for everyone?`,
    text: 'Everyone in it leaves now.', ok: 'End meeting',
  });
  if (!ok) return;
  await withMeeting(meeting, async (token, digits) => {
    await api(`/meetings/${digits}/end`, { method: 'POST', token });
    toast('The meeting has ended.', 'info');
    await loadMeetings();
  });
}

async function remove(meeting) {
  const ok = await confirmDialog({
    title: `Delete “${meeting.title || 'Meeting'}”?`,
    text: meeting.status === 'live' ? 'It is live: everyone in it leaves now. Its chat is deleted too.'
      : 'Its Meeting ID and link stop working and its chat is deleted.',
    ok: 'Delete',
  });
  if (!ok) return;
  await withMeeting(meeting, async (token, digits) => {
    await api(`/meetings/${digits}`, { method: 'DELETE', token });
    page.meetings = page.meetings.filter((m) => digitsOf(m) !== digits);
    toast('Meeting deleted.', 'info');
  });
}

document.addEventListener('visibilitychange', () => { if (!document.hidden && hostSession()) loadMeetings(); });

// ---------------------------------------------------------------- boot

async function boot() {
  fillIcons();
  const signedIn = hostSession();
  if (!signedIn) {
    showSignIn(takeSignoutReason());
    return;
  }
  try {
    const me = await api('/auth/me', { token: signedIn.token });
    const hostInfo = (me && (me.host || me)) || signedIn.host;
    saveHostSession(signedIn.token, hostInfo);
    showDashboard(hostSession());
  } catch (err) {
    if (isSignedOutError(err)) signedOut(err);
    else showDashboard(signedIn);   // the server is unreachable: show what we know
  }
}

boot();
