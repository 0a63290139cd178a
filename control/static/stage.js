// A webinar's roles as the server tells them (docs/signaling.md, "Webinars"): whether we
// may publish (`joined`'s may_publish, then `stage_role`), our raised hand, and for the
// host the meeting's stage (`stage`: the setting, the speakers, the hands oldest first).
// No DOM here: the page draws it (stagepanel.js).

export class StageState {
  constructor() {
    this.reset(true);
  }

  // A new join: `mayPublish` is what the REST join said (false: a webinar's attendee).
  reset(mayPublish) {
    this.mayPublish = mayPublish !== false;
    this.role = null;                 // host | participant | speaker | attendee, once told
    this.handRaised = false;
    this.attendeesPublish = null;     // (host) the meeting's setting
    this.speakers = [];               // (host) participant ids of promoted attendees
    this.hands = [];                  // (host) [{participant_id, name, raised_at}], oldest first
  }

  onJoined(msg) {
    this.mayPublish = msg.may_publish !== false;
    this.handRaised = false;
  }

  // True when whether we may publish changed.
  onRole(msg) {
    const before = this.mayPublish;
    if (typeof msg.role === 'string') this.role = msg.role;
    this.mayPublish = msg.may_publish !== false;
    this.handRaised = msg.hand_raised === true;
    return before !== this.mayPublish;
  }

  onStage(msg) {
    if (typeof msg.attendees_publish === 'boolean') this.attendeesPublish = msg.attendees_publish;
    this.speakers = Array.isArray(msg.speakers) ? msg.speakers.filter((p) => typeof p === 'string') : [];
    this.hands = Array.isArray(msg.hands) ? msg.hands.filter((h) => h && typeof h.participant_id === 'string') : [];
  }

  get isWebinar() {
    return this.attendeesPublish === false || this.role === 'attendee' || this.role === 'speaker';
  }

  snapshot() {
    return {
      mayPublish: this.mayPublish, role: this.role, handRaised: this.handRaised,
      attendeesPublish: this.attendeesPublish, speakers: [...this.speakers], hands: this.hands.map((h) => ({ ...h })),
    };
  }
}
