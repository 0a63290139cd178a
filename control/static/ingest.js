// The host's Ingest panel (issue 12, items 4 and 6): bring a WHIP encoder (OBS, GStreamer,
// a browser) or an RTP sender (ffmpeg, GStreamer) into the meeting as a participant of its
// own. Made over REST (/meetings/{number}/ingests, docs/ingest.md): a WHIP ingest's URL and
// token, an RTP ingest's commands, are shown once; the list revokes, and continues for a
// stream the recording's consent holds (a stream cannot press Continue).

import { api } from './api.js';
import { el, toast } from './ui.js';

const $ = (id) => document.getElementById(id);

export class IngestPanel {
  constructor(hostControls, number) {
    this.host = hostControls;        // its authToken(): the host's join token or sign-in
    this.number = number;
    this.ingests = [];
    this.busy = false;
  }

  path(suffix = '') { return `/meetings/${this.number}/ingests${suffix}`; }

  call(suffix, method, body) { return api(this.path(suffix), { method, body, token: this.host.authToken() }); }

  // Wires the form once; the list is loaded now and after every change.
  start() {
    $('ingest-section').hidden = false;
    $('ingest-kind').addEventListener('change', () => { $('ingest-srtp-label').hidden = $('ingest-kind').value !== 'rtp'; });
    $('ingest-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.create($('ingest-kind').value, $('ingest-name').value, $('ingest-srtp').checked);
    });
    return this.refresh();
  }

  async refresh() {
    try {
      this.ingests = (await this.call('', 'GET')).ingests || [];
    } catch (err) {
      this.ingests = [];
    }
    this.render();
  }

  async create(kind, name, srtp) {
    if (this.busy) return;
    this.busy = true;
    $('ingest-create').disabled = true;
    try {
      const made = await this.call('', 'POST', kind === 'rtp' ? { kind, name, srtp } : { kind, name });
      this.showOnce(made);
      $('ingest-name').value = '';
    } catch (err) {
      toast(err.message, 'error');
    } finally {
      this.busy = false;
      $('ingest-create').disabled = false;
      await this.refresh();
    }
  }

  // What the server shows only at creation: the WHIP URL and token, or the commands.
  showOnce(made) {
    const text = made.kind === 'whip'
      ? `WHIP URL: ${made.whip_url}\nBearer token: ${made.token}`
      : `Send to ${made.rtp.ip}:${made.rtp.port}${made.srtp_key ? ` (SRTP key ${made.srtp_key})` : ''}\n\n`
        + `ffmpeg (replace input.mp4):\n${made.commands.ffmpeg}\n\nGStreamer:\n${made.commands.gstreamer}`;
    $('ingest-secret').textContent = text;
    $('ingest-made').hidden = false;
  }

  async act(suffix, method, what) {
    try {
      await this.call(suffix, method);
      toast(what, 'info');
    } catch (err) {
      toast(err.message, 'error');
    }
    await this.refresh();
  }

  render() {
    const live = this.ingests.filter((i) => i.state === 'active');
    $('ingest-list').replaceChildren(...live.map((ingest) => {
      const id = encodeURIComponent(ingest.id);
      const status = ingest.media_held ? 'held: recording consent' : ingest.connected ? 'in the meeting' : 'not connected';
      const actions = [];
      if (ingest.media_held) {
        const go = el('button', { type: 'button', class: 'btn btn-primary btn-small', dataset: { testid: 'ingest-continue' },
          'aria-label': `Continue for ${ingest.name}` }, 'Continue');
        go.addEventListener('click', () => this.act(`/${id}/continue`, 'POST', `${ingest.name} is heard and seen`));
        actions.push(go);
      }
      const revoke = el('button', { type: 'button', class: 'btn btn-ghost btn-small', dataset: { testid: 'ingest-revoke' },
        'aria-label': `Revoke ${ingest.name}` }, 'Revoke');
      revoke.addEventListener('click', () => this.act(`/${id}`, 'DELETE', `${ingest.name} revoked`));
      actions.push(revoke);
      return el('li', { class: 'person', dataset: { testid: 'ingest-item', ingestId: ingest.id, kind: ingest.kind } },
        el('span', { class: 'person-name' }, `${ingest.name} `, el('small', { class: 'hint' }, `${ingest.kind.toUpperCase()} · ${status}`)),
        el('span', { class: 'person-actions' }, ...actions));
    }));
  }
}
