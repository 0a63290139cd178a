// The host's side of the meeting page: the moderation calls (REST, docs/control-plane-reference.md)
// and the pieces of UI only a host sees: the waiting room list, the buttons on each
// person, the "someone is waiting" card, lock and end for all. The server decides who may
// do any of this; the page only draws it for the host.

import { api, hostSession, tokenSecondsLeft } from './api.js';
import { icons } from './icons.js';
import { el, toast, confirmDialog, initials, colorFor } from './ui.js';

const $ = (id) => document.getElementById(id);

export class HostControls {
  constructor(session, number, { onLockChange = () => {} } = {}) {
    this.session = session;
    this.number = number;
    this.locked = false;
    this.onLockChange = onLockChange;
    this.busy = new Set();          // "action:pid" in flight: its button stays disabled
    this.hostMuted = new Map();     // pid -> Set of sources this host muted (server-side)
    this.seenWaiting = new Set();   // waiting people already announced by the knock card
  }

  // The host's own join token while it is valid (it carries the moderate grant), else the
  // host's session token: both are accepted for the host's meeting controls.
  authToken() {
    const token = this.session.token;
    if (token && tokenSecondsLeft(token) > 5) return token;
    const signedIn = hostSession();
    return signedIn ? signedIn.token : token;
  }

  async call(path, body, key = null) {
    if (key) this.busy.add(key);
    try {
      return await api(`/meetings/${this.number}${path}`, { method: 'POST', body, token: this.authToken() });
    } finally {
      if (key) this.busy.delete(key);
    }
  }

  admit(pid) { return this.call(`/participants/${encodeURIComponent(pid)}/admit`, undefined, `admit:${pid}`); }

  deny(pid) { return this.call(`/participants/${encodeURIComponent(pid)}/deny`, undefined, `deny:${pid}`); }

  admitAll() { return this.call('/admit-all', undefined, 'admit-all'); }

  remove(pid) { return this.call(`/participants/${encodeURIComponent(pid)}/remove`, undefined, `remove:${pid}`); }

  async mute(pid, source, muted = true) {
    const reply = await this.call(`/participants/${encodeURIComponent(pid)}/mute`, { source, muted: !!muted },
      `mute:${source}:${pid}`);
    const held = reply && Array.isArray(reply.muted_by_host) ? new Set(reply.muted_by_host) : null;
    if (held) this.hostMuted.set(pid, held);
    else if (muted) this.hostMuted.set(pid, new Set([...(this.hostMuted.get(pid) || []), source]));
    else (this.hostMuted.get(pid) || new Set()).delete(source);
    return reply;
  }

  async lock(locked) {
    const reply = await this.call('/lock', { locked: !!locked }, 'lock');
    this.setLocked(reply && typeof reply.locked === 'boolean' ? reply.locked : !!locked);
    return reply;
  }

  end() { return this.call('/end', undefined, 'end'); }

  // A WHEP viewer token (docs/whep.md): {token, whep_url, label, expires_at, ...}. The
  // token is shown once, here; the server keeps only what revokes it.
  issueViewerToken(label) { return this.call('/viewer-tokens', { label }, 'viewer-link'); }

  async showViewerLink(rerender) {
    try {
      const issued = await this.issueViewerToken(`Viewer link ${new Date().toLocaleTimeString()}`);
      const url = `${window.location.origin}${issued.whep_url}`;
      const copy = await confirmDialog({
        title: 'Viewer link (WHEP)',
        text: `A WHEP player (OBS, GStreamer, a web player) watches the meeting with\n${url}\n`
          + `Bearer token: ${issued.token}\nValid until ${new Date(issued.expires_at).toLocaleString()}.`,
        ok: 'Copy token',
      });
      if (copy && navigator.clipboard) await navigator.clipboard.writeText(issued.token).catch(() => {});
    } catch (err) {
      toast(`${err.message}`, 'error');
    } finally {
      rerender();
    }
  }

  setLocked(locked) {
    this.locked = !!locked;
    this.onLockChange(this.locked);
  }

  // Who the host has muted, as the server says (after a reload of the page, say).
  async loadParticipants() {
    try {
      const reply = await api(`/meetings/${this.number}/participants`, { token: this.authToken() });
      for (const p of (reply && reply.admitted) || []) {
        if (Array.isArray(p.muted_by_host)) this.hostMuted.set(p.participant_id, new Set(p.muted_by_host));
      }
    } catch (e) { /* the buttons start from "not muted by you" */ }
  }

  // The meeting as the host's session sees it (title, join link, locked), or null.
  async loadMeeting() {
    const signedIn = hostSession();
    if (!signedIn) return null;
    try {
      const meeting = await api(`/meetings/${this.number}`, { token: signedIn.token });
      if (meeting && typeof meeting.locked === 'boolean') this.setLocked(meeting.locked);
      return meeting;
    } catch (e) {
      return null;   // not fatal: the lock button starts as "unlocked"
    }
  }

  // ---------------------------------------------------------------- UI actions (buttons)

  // Runs one action from a button: reports a refusal as a toast, redraws either way.
  async act(action, rerender, successText = null) {
    try {
      await action();
      if (successText) toast(successText, 'info');
    } catch (err) {
      toast(`${err.message}`, 'error');
    } finally {
      rerender();
    }
  }

  async confirmRemove(person, rerender) {
    const ok = await confirmDialog({
      title: `Remove ${person.name}?`,
      text: 'They leave the meeting now and cannot join it again.',
      ok: 'Remove',
    });
    if (ok) await this.act(() => this.remove(person.participant_id), rerender);
  }

  async confirmEnd(rerender) {
    const ok = await confirmDialog({
      title: 'End the meeting for everyone?',
      text: 'Everyone, you included, leaves the meeting now.',
      ok: 'End meeting',
    });
    if (ok) await this.act(() => this.end(), rerender);
  }

  // ---------------------------------------------------------------- drawing

  // The buttons on one admitted person's row in the people list.
  personActions(person, rerender) {
    const muted = person.muted || {};
    const pid = person.participant_id;
    const button = (testid, label, icon, onClick, { disabled = false, danger = false, held = false } = {}) => {
      const b = el('button', {
        type: 'button', class: `btn-icon-only person-action${danger ? ' danger' : ''}${held ? ' held' : ''}`,
        dataset: { testid }, 'aria-label': `${label}: ${person.name}`, title: label, html: icons[icon],
      });
      b.disabled = disabled;
      b.addEventListener('click', onClick);
      return b;
    };
    // One button per source: mute it (server-side), or let them turn it on again if this
    // host muted it; a source they turned off themselves needs nothing from the host.
    const held = this.hostMuted.get(pid) || new Set();
    const sourceButton = (source, testid, words) => {
      const key = `mute:${source}:${pid}`;
      if (held.has(source)) {
        return button(testid, `Let them turn the ${words.noun} on again`, words.offIcon,
          () => this.act(() => this.mute(pid, source, false), rerender), { disabled: this.busy.has(key), held: true });
      }
      if (muted[source]) {
        return button(testid, `${words.Noun} is off`, words.offIcon, () => {}, { disabled: true });
      }
      return button(testid, words.action, words.onIcon,
        () => this.act(() => this.mute(pid, source, true), rerender), { disabled: this.busy.has(key) });
    };
    return el('span', { class: 'person-actions' },
      sourceButton('microphone', 'host-mute-mic',
        { noun: 'microphone', Noun: 'Microphone', action: 'Mute microphone', onIcon: 'mic', offIcon: 'micOff' }),
      sourceButton('camera', 'host-stop-video',
        { noun: 'camera', Noun: 'Camera', action: 'Stop video', onIcon: 'camera', offIcon: 'cameraOff' }),
      button('host-remove', 'Remove from the meeting', 'removeUser',
        () => this.confirmRemove(person, rerender), { disabled: this.busy.has(`remove:${pid}`), danger: true }));
  }

  renderWaiting(rerender) {
    const waiting = this.session.waitingRoom;
    $('waiting-section').hidden = waiting.length === 0;
    $('waiting-count').textContent = String(waiting.length);
    $('admit-all').disabled = this.busy.has('admit-all');
    $('admit-all').hidden = waiting.length < 2;
    $('waiting-list').replaceChildren(...waiting.map((p) => {
      const pid = p.participant_id;
      const admit = el('button', {
        type: 'button', class: 'btn btn-primary btn-small', dataset: { testid: 'admit' },
        'aria-label': `Admit ${p.name}`,
      }, 'Admit');
      admit.disabled = this.busy.has(`admit:${pid}`);
      admit.addEventListener('click', () => this.act(() => this.admit(pid), rerender));
      const deny = el('button', {
        type: 'button', class: 'btn btn-ghost btn-small', dataset: { testid: 'deny' },
        'aria-label': `Deny ${p.name}`,
      }, 'Deny');
      deny.disabled = this.busy.has(`deny:${pid}`);
      deny.addEventListener('click', () => this.act(() => this.deny(pid), rerender));
      return el('li', { class: 'person', dataset: { testid: 'waiting-person', participantId: pid } },
        el('span', { class: 'person-avatar', style: `background:${colorFor(pid)}`, 'aria-hidden': 'true' }, initials(p.name)),
        el('span', { class: 'person-name' }, p.name),
        el('span', { class: 'person-actions' }, admit, deny));
    }));
    this.renderKnock(rerender);
  }

  // A card in the corner when someone new starts waiting, so the host notices without
  // keeping the people panel open.
  renderKnock(rerender) {
    const waiting = this.session.waitingRoom;
    const ids = new Set(waiting.map((p) => p.participant_id));
    for (const id of [...this.seenWaiting]) if (!ids.has(id)) this.seenWaiting.delete(id);
    const fresh = waiting.filter((p) => !this.seenWaiting.has(p.participant_id));
    const knock = $('knock');
    const listShown = !$('people-panel').hidden && !$('side').hidden;
    if (waiting.length === 0 || listShown) {
      for (const p of waiting) this.seenWaiting.add(p.participant_id);
      knock.hidden = true;
      return;
    }
    if (fresh.length === 0 && knock.hidden) return;
    for (const p of fresh) this.seenWaiting.add(p.participant_id);
    const newest = fresh.length ? fresh[fresh.length - 1] : waiting[waiting.length - 1];
    $('knock-text').textContent = waiting.length === 1
      ? `${newest.name} is waiting to join.`
      : `${waiting.length} people are waiting to join.`;
    $('knock-admit').textContent = waiting.length === 1 ? 'Admit' : 'Admit all';
    $('knock-admit').onclick = () => {
      knock.hidden = true;
      this.act(() => (waiting.length === 1 ? this.admit(newest.participant_id) : this.admitAll()), rerender);
    };
    knock.hidden = false;
  }

  hideKnock() {
    $('knock').hidden = true;
  }
}
