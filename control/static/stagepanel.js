// The webinar's part of the meeting page (docs/control-plane.md, "Webinars"): the raise-hand
// button of attendees and speakers, and the host's list of raised hands (let them speak,
// lower the hand) and of speakers (back to the audience). The protocol is session.js's;
// the server decides who may do any of this.

import { el, toast, initials, colorFor } from './ui.js';
import { icons } from './icons.js';

const $ = (id) => document.getElementById(id);

export class StagePanel {
  constructor(session, { isHost, rerender }) {
    this.session = session;
    this.isHost = isHost;           // () => true once we are in as the host
    this.rerender = rerender;
    this.busy = new Set();          // "promote:pid" etc. in flight: its button stays disabled
    $('toggle-hand').addEventListener('click', () => this.toggleHand());
  }

  get stage() {
    return this.session.stage;
  }

  async toggleHand() {
    const raise = !this.stage.handRaised;
    try {
      await this.session.raiseHand(raise);
      if (raise) toast('Your hand is raised: the host sees it.', 'info');
    } catch (err) {
      toast(`Could not ${raise ? 'raise' : 'lower'} your hand: ${err.message}`, 'error');
    }
  }

  async act(key, work, done) {
    this.busy.add(key);
    this.render();
    try {
      await work();
      if (done) toast(done, 'info');
    } catch (err) {
      toast(err.message || String(err), 'error');
    } finally {
      this.busy.delete(key);
      this.rerender();
    }
  }

  promote(pid) {
    return this.act(`promote:${pid}`, () => this.session.setSpeaker(pid, true));
  }

  demote(pid) {
    return this.act(`demote:${pid}`, () => this.session.setSpeaker(pid, false));
  }

  lowerHand(pid) {
    return this.act(`lower:${pid}`, () => this.session.lowerHandOf(pid));
  }

  render() {
    const joined = this.session.state === 'joined';
    const host = this.isHost();
    // Everyone but the host raises a hand in a webinar (attendees to ask, speakers to speak up).
    const hand = $('toggle-hand');
    hand.hidden = !joined || host || !this.stage.isWebinar;
    const up = this.stage.handRaised;
    hand.innerHTML = `${icons.hand}<span class="ctl-label">${up ? 'Lower hand' : 'Raise hand'}</span>`;
    hand.setAttribute('aria-label', up ? 'Lower your hand' : 'Raise your hand to ask to speak');
    hand.classList.toggle('active', up);
    // An attendee has nothing to publish: no microphone, camera or screen button.
    for (const id of ['toggle-mic', 'toggle-camera', 'toggle-screen']) $(id).hidden = joined && !this.stage.mayPublish;
    this.renderHostLists(joined && host);
  }

  renderHostLists(shown) {
    const section = $('stage-section');
    section.hidden = !shown || this.stage.attendeesPublish !== false;
    if (section.hidden) return;
    const names = new Map([...this.session.participants.values()].map((p) => [p.participant_id, p.name]));
    $('hands-count').textContent = this.stage.hands.length ? String(this.stage.hands.length) : '';
    $('hands-list').replaceChildren(...this.stage.hands.map((h) => this.personRow(h.participant_id, h.name, 'hand', [
      this.button('promote', 'Let speak', 'stageUp', h, () => this.promote(h.participant_id)),
      this.button('lower-hand', 'Lower hand', 'close', h, () => this.lowerHand(h.participant_id)),
    ])));
    if (!this.stage.hands.length) $('hands-list').append(el('li', { class: 'people-empty' }, 'No raised hands.'));
    const speakers = this.stage.speakers.map((pid) => ({ participant_id: pid, name: names.get(pid) || pid }));
    $('speakers-list').replaceChildren(...speakers.map((p) => this.personRow(p.participant_id, p.name, 'speaker', [
      this.button('demote', 'Back to the audience', 'stageDown', p, () => this.demote(p.participant_id)),
    ])));
    if (!speakers.length) $('speakers-list').append(el('li', { class: 'people-empty' }, 'Only you speak.'));
  }

  // (host, webinar) On a person of the people list: let them speak, or back to the audience.
  personAction(person) {
    if (this.stage.attendeesPublish !== false) return null;
    const pid = person.participant_id;
    return this.stage.speakers.includes(pid)
      ? this.button('demote', 'Back to the audience', 'stageDown', person, () => this.demote(pid))
      : this.button('promote', 'Let speak', 'stageUp', person, () => this.promote(pid));
  }

  personRow(pid, name, testid, actions) {
    return el('li', { class: 'person', dataset: { testid, participantId: pid } },
      el('span', { class: 'person-avatar', style: `background:${colorFor(pid)}`, 'aria-hidden': 'true' }, initials(name)),
      el('span', { class: 'person-name' }, name),
      el('span', { class: 'person-actions' }, ...actions));
  }

  button(testid, label, icon, person, onClick) {
    const key = `${testid === 'lower-hand' ? 'lower' : testid}:${person.participant_id}`;
    const b = el('button', {
      type: 'button', class: 'btn-icon-only person-action', dataset: { testid },
      'aria-label': `${label}: ${person.name}`, title: label, html: icons[icon],
    });
    b.disabled = this.busy.has(key);
    b.addEventListener('click', onClick);
    return b;
  }
}
