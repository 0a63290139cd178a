// The recording notice banner of the meeting page: a bar across the top, under the title
// bar, that nobody in the meeting can miss while recording or transcription is on. It
// says what is happening and who started it, offers Leave (and Continue while the server
// waits for consent), and says "Recording stopped" for a few seconds when it ends.
//
// The elements are passed in (meeting.html has them; the unit tests build their own); the
// words and the timing come from recording.js.

import { RecordingNotice, STOPPED_NOTICE_MS, defaultClearTimer, defaultSetTimer, isOn, stoppedText } from './recording.js';
import { toast } from './ui.js';

export class RecordingBanner {
  // els: {root, text, detail, continueButton, leaveButton}
  constructor(session, els, { setTimer = defaultSetTimer, clearTimer = defaultClearTimer, stoppedMs = STOPPED_NOTICE_MS } = {}) {
    this.session = session;
    this.els = els;
    this.notice = new RecordingNotice({
      onChange: () => this.render(), setTimer, clearTimer, stoppedMs, isHost: () => session.role === 'host',
    });
    session.addEventListener('recording', (event) => this.onRecording(event.detail));
    els.continueButton.addEventListener('click', () => this.decide('continue'));
    els.leaveButton.addEventListener('click', () => this.decide('leave'));
    if (typeof ResizeObserver === 'function') new ResizeObserver(() => this.setRoomOffset()).observe(els.root);
    this.render();
  }

  get view() {
    return this.notice.view;
  }

  onRecording({ before, state, consentPending }) {
    if (this.session.state === 'left') {
      this.notice.clear();   // the ended screen says enough
      return;
    }
    // One of two things stopped while the other goes on: the banner keeps showing the
    // other, and a short message says what stopped.
    const partly = isOn(state) ? stoppedText(before, state) : null;
    if (partly) toast(`${partly}.`, 'info');
    this.notice.update(before, state, consentPending);
  }

  async decide(decision) {
    try {
      await this.session.recording.consent(decision);
    } catch (err) {
      const wish = decision === 'leave' ? 'leave' : 'continue';
      toast(`Could not tell the server you want to ${wish}: ${err.message}. Try again.`, 'error');
    }
  }

  render() {
    const { root, text, detail, continueButton, leaveButton } = this.els;
    const view = this.notice.view;
    const shown = view.mode !== 'hidden';
    root.hidden = !shown;
    root.dataset.mode = view.mode;
    // role=alert: screen readers speak the text when it changes, so set it only on change.
    if (text.textContent !== view.text) text.textContent = view.text;
    if (detail.textContent !== view.detail) detail.textContent = view.detail;
    detail.hidden = !view.detail;
    continueButton.hidden = !view.canContinue;
    continueButton.disabled = this.session.recording.busy.has('consent');
    leaveButton.hidden = view.mode !== 'on';
    document.body.classList.toggle('rec-banner-on', shown);
    this.setRoomOffset();
  }

  // The room sits below the banner; its height depends on how the words wrap.
  setRoomOffset() {
    const root = this.els.root;
    document.documentElement.style.setProperty('--rec-h', root.hidden ? '0px' : `${root.offsetHeight}px`);
  }
}
