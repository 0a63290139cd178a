// The video tiles: one per participant (camera + microphone) and a larger one per screen
// share. `render(session)` reconciles the DOM with the session's current state, so every
// event can simply call it again. The active speaker's tile (the server's `active_speaker`)
// is highlighted (class `speaking`, `data-speaking="true"`); another participant's camera
// tile that speaks is also featured: first in the grid and twice as large (`featured`).
// A remote video tile shows the server's word on its quality (adaptive.js): bars for the
// layer it receives, none and a dimmed picture with a label while the server pauses it.
// Every camera tile, our own too, shows its participant's connection quality as the server
// scores it (quality.js): a dot with `data-quality` excellent | good | poor.

import { icons } from './icons.js';
import { ANNOUNCEMENT_SOURCE } from './mediastats.js';
import { qualityOf } from './adaptive.js';
import { connectionOf } from './quality.js';
import { el, initials, colorFor } from './ui.js';

function tileKey(participantId, source) {
  return source === 'screen' || source === 'screen-audio' ? `${participantId}:screen` : `${participantId}:camera`;
}

// Points a media element at `track` (or nothing), touching it only when that changes so
// playing video does not flicker on every render.
export function attach(mediaEl, track, onBlocked) {
  const current = mediaEl.srcObject ? mediaEl.srcObject.getTracks()[0] : null;
  if (current === (track || null)) return;
  mediaEl.srcObject = track ? new MediaStream([track]) : null;
  if (!track) return;
  const played = mediaEl.play();
  if (played && played.catch) {
    played.catch((err) => {
      if (err && err.name === 'NotAllowedError' && onBlocked) onBlocked(mediaEl);
    });
  }
}

// Each remote tile reports its rendered size (device pixels) and visibility for the track
// it shows (`report(trackId, width, height, visible)`): the server forwards the smallest
// simulcast layer that fills it, nothing while it is hidden or off-screen.
class TileWatch {
  constructor(root, report) {
    this.root = root;
    this.report = report;
    this.trackId = null;
    this.width = 0;
    this.height = 0;
    this.intersecting = true;
    this.resize = typeof ResizeObserver === 'function' ? new ResizeObserver((entries) => {
      const box = entries[entries.length - 1].contentRect;
      this.width = box.width;
      this.height = box.height;
      this.changed();
    }) : null;
    this.intersection = typeof IntersectionObserver === 'function' ? new IntersectionObserver((entries) => {
      this.intersecting = entries[entries.length - 1].isIntersecting;
      this.changed();
    }) : null;
    if (this.resize) this.resize.observe(root);
    if (this.intersection) this.intersection.observe(root);
  }

  setTrack(trackId, known) {
    if (trackId === this.trackId && known) return;
    this.trackId = trackId;
    this.changed();
  }

  changed() {
    if (!this.trackId) return;
    const ratio = window.devicePixelRatio || 1;
    const visible = this.intersecting && this.width > 0 && this.height > 0 && document.visibilityState !== 'hidden';
    this.report(this.trackId, this.width * ratio, this.height * ratio, visible);
  }

  stop() {
    if (this.resize) this.resize.disconnect();
    if (this.intersection) this.intersection.disconnect();
  }
}

class Tile {
  constructor(key, { participantId, screen, local }) {
    this.key = key;
    this.watch = null;   // remote tiles: set by the board
    this.video = el('video', { autoplay: true, playsInline: true, muted: true, class: local && !screen ? 'mirror' : null });
    this.video.muted = true;   // the property, not only the attribute, keeps autoplay allowed
    this.audio = el('audio', { autoplay: true, class: 'hidden-audio' });
    this.avatar = el('div', { class: 'avatar', 'aria-hidden': 'true' });
    this.nameEl = el('span', { class: 'tile-name', dataset: { testid: 'tile-name' } });
    this.micFlag = el('span', {
      class: 'tile-flag', dataset: { testid: 'tile-muted-mic' }, title: 'Microphone muted',
      role: 'img', 'aria-label': 'Microphone muted', html: icons.micOff, hidden: true,
    });
    this.camFlag = el('span', {
      class: 'tile-flag', dataset: { testid: 'tile-muted-camera' }, title: 'Camera off',
      role: 'img', 'aria-label': 'Camera off', html: icons.cameraOff, hidden: true,
    });
    this.quality = el('span', {
      class: 'tile-quality', dataset: { testid: 'tile-quality', bars: '0' }, role: 'img', hidden: true,
    }, el('i', {}), el('i', {}), el('i', {}));
    this.connection = el('span', {
      class: 'tile-connection', dataset: { testid: 'tile-connection', quality: '' }, role: 'img', hidden: true,
    });
    this.pausedLabel = el('span', { class: 'tile-paused', dataset: { testid: 'tile-paused' }, hidden: true });
    this.root = el('figure', {
      class: `tile${screen ? ' tile-screen' : ''}${local ? ' tile-local' : ''}`,
      dataset: {
        testid: local ? (screen ? 'tile-local-screen' : 'tile-local') : 'tile',
        participantId,
        source: screen ? 'screen' : 'camera',
      },
    }, this.video, this.avatar, this.audio, this.pausedLabel,
    el('figcaption', {}, this.connection, this.nameEl, this.micFlag, this.camFlag, this.quality));
  }

  update({ name, video, audio, micMuted, camMuted, speaking, featured, onBlocked, videoTrackId, tileKnown, trackState,
    connection }) {
    if (this.watch) this.watch.setTrack(videoTrackId || null, tileKnown);
    if (this.nameEl.textContent !== name) {
      this.nameEl.textContent = name;
      this.root.setAttribute('aria-label', name);
      this.avatar.textContent = initials(name.replace(/ \((you|screen)\)$/, ''));
      this.avatar.style.background = colorFor(this.root.dataset.participantId);
    }
    attach(this.video, video, null);
    if (this.audio) attach(this.audio, audio, onBlocked);
    // A remote track is `muted` until its first frame arrives: show the avatar until then.
    const showVideo = !!video && !camMuted && video.readyState === 'live' && !video.muted;
    this.root.classList.toggle('has-video', showVideo);
    this.micFlag.hidden = !micMuted;
    this.camFlag.hidden = !camMuted;
    this.root.dataset.micMuted = String(!!micMuted);
    this.root.dataset.cameraMuted = String(!!camMuted);
    this.root.classList.toggle('speaking', !!speaking);
    this.root.classList.toggle('featured', !!featured);
    this.root.dataset.speaking = String(!!speaking);
    this.showQuality(qualityOf(trackState || null), trackState ? trackState.paused : null);
    this.showConnection(connectionOf(connection || null));
  }

  // The participant's connection quality as the server scores it (a coloured dot), or
  // nothing before the first score.
  showConnection(connection) {
    this.connection.hidden = !connection;
    this.connection.dataset.quality = connection ? connection.quality : '';
    this.root.dataset.connectionQuality = connection ? connection.quality : '';
    this.connection.title = connection ? connection.label : '';
    if (connection) this.connection.setAttribute('aria-label', connection.label);
    else this.connection.removeAttribute('aria-label');
  }

  // Bars for the layer received (3: the top one), or none and "Paused" while the server
  // pauses it: a paused picture is dimmed, not taken for a frozen one.
  showQuality(quality, paused) {
    this.quality.hidden = !quality;
    if (quality) {
      this.quality.dataset.bars = String(quality.bars);
      this.quality.title = quality.label;
      this.quality.setAttribute('aria-label', `Video quality: ${quality.label}`);
    }
    this.root.classList.toggle('paused', !!paused);
    this.root.dataset.paused = paused || '';
    this.pausedLabel.hidden = !paused;
    this.pausedLabel.textContent = paused ? 'Paused' : '';
    this.pausedLabel.title = quality ? quality.label : '';
  }

  remove() {
    if (this.watch) this.watch.stop();
    attach(this.video, null);
    attach(this.audio, null);
    this.root.remove();
  }
}

export class TileBoard {
  constructor(grid, screens, { onAudioBlocked, onTileSize } = {}) {
    this.onTileSize = onTileSize;   // (trackId, width, height, visible): a remote tile changed
    this.grid = grid;
    this.screens = screens;
    this.tiles = new Map();   // key -> Tile
    this.onAudioBlocked = onAudioBlocked;
  }

  render(session) {
    const wanted = new Map();   // key -> {spec, state}
    const want = (key, spec, state) => wanted.set(key, { spec, state });
    const inMeeting = session.state === 'joined' || session.state === 'reconnecting' || session.state === 'joining';
    if (!inMeeting) {
      this.reconcile(wanted);
      return;
    }

    const selfId = session.participantId || 'self';
    const speaker = session.activeSpeaker || null;
    const localVideo = session.localTracks('camera')[0] || null;
    // A webinar shows its speakers, not its audience (hundreds of empty tiles): an
    // attendee has no tile, its own included (stage.js).
    const stage = session.stage;
    const webinar = !!(stage && stage.isWebinar);
    const sending = new Set(session.remoteMedia().map((m) => m.participant_id));
    if (!webinar || stage.mayPublish) want(tileKey(selfId, 'camera'), { participantId: selfId, screen: false, local: true }, {
      name: `${session.name} (you)`, video: localVideo, audio: null,
      micMuted: session.muted.microphone, camMuted: session.muted.camera,
      speaking: speaker === selfId, connection: session.connectionQuality.get(selfId),
    });
    if (session.screenStream) {
      want(tileKey(selfId, 'screen'), { participantId: selfId, screen: true, local: true }, {
        name: `${session.name} (screen)`, video: session.screenStream.getVideoTracks()[0] || null, audio: null,
      });
    }

    for (const [pid, p] of session.participants) {
      if (webinar && p.role !== 'host' && !sending.has(pid)) continue;
      want(tileKey(pid, 'camera'), { participantId: pid, screen: false }, {
        name: p.name, video: null, audio: null,
        micMuted: !!(p.muted && p.muted.microphone), camMuted: !!(p.muted && p.muted.camera),
        speaking: pid === speaker, featured: pid === speaker, connection: session.connectionQuality.get(pid),
      });
    }
    for (const media of session.remoteMedia()) {
      // The server's spoken notices belong to nobody: the page plays them on its own
      // <audio> element, never as a tile.
      if (media.source === ANNOUNCEMENT_SOURCE || !media.participant_id) continue;
      const pid = media.participant_id;
      const key = tileKey(pid, media.source);
      const person = session.participants.get(pid);
      const name = person ? person.name : 'Guest';
      if (!wanted.has(key)) {
        const screen = key.endsWith(':screen');
        want(key, { participantId: pid, screen }, {
          name: screen ? `${name} (screen)` : name, video: null, audio: null,
          micMuted: false, camMuted: false,
        });
      }
      const state = wanted.get(key).state;
      if (media.kind === 'video') {
        state.video = media.track;
        state.videoTrackId = media.track_id;
        state.tileKnown = !!(session.tileSizes && session.tileSizes.has(media.track_id));
        state.trackState = session.trackStates ? session.trackStates.get(media.track_id) : null;
      } else state.audio = media.track;
    }
    this.reconcile(wanted);
  }

  reconcile(wanted) {
    for (const [key, tile] of this.tiles) {
      if (!wanted.has(key)) {
        tile.remove();
        this.tiles.delete(key);
      }
    }
    for (const [key, { spec, state }] of wanted) {
      let tile = this.tiles.get(key);
      if (!tile) {
        tile = new Tile(key, spec);
        if (!spec.local && this.onTileSize) tile.watch = new TileWatch(tile.root, this.onTileSize);
        this.tiles.set(key, tile);
        (spec.screen ? this.screens : this.grid).append(tile.root);
      }
      tile.update({ ...state, onBlocked: this.onAudioBlocked });
    }
    const cameraTiles = this.grid.children.length;
    // A featured tile covers 2 x 2 cells: the columns are counted for the cells.
    const cells = cameraTiles + (this.grid.querySelector('.tile.featured') ? 3 : 0);
    this.grid.style.setProperty('--cols', String(Math.max(1, Math.ceil(Math.sqrt(cells)))));
    this.grid.style.setProperty('--count', String(cameraTiles));
    this.screens.parentElement.classList.toggle('has-screens', this.screens.children.length > 0);
  }

  audioElements() {
    return [...this.tiles.values()].map((t) => t.audio).filter((a) => a && a.srcObject);
  }
}
