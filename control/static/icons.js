// Small inline SVG icons (drawn for this project; no icon font, nothing fetched).
// Each is 24x24, stroked with currentColor so buttons color them through CSS.

const wrap = (body) =>
  `<svg class="icon" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false" ` +
  `fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;

const slash = '<line x1="3" y1="3" x2="21" y2="21"/>';
const micBody = '<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0"/><line x1="12" y1="18" x2="12" y2="21"/>';
const camBody = '<rect x="3" y="6" width="12" height="12" rx="2"/><path d="M15 10l6-3v10l-6-3z"/>';
const screenBody = '<rect x="3" y="4" width="18" height="12" rx="2"/><line x1="8" y1="20" x2="16" y2="20"/><line x1="12" y1="16" x2="12" y2="20"/>';

export const icons = {
  mic: wrap(micBody),
  micOff: wrap(micBody + slash),
  camera: wrap(camBody),
  cameraOff: wrap(camBody + slash),
  screen: wrap(screenBody + '<path d="M9 10l3-3 3 3"/><line x1="12" y1="7" x2="12" y2="13"/>'),
  screenOff: wrap(screenBody + slash),
  chat: wrap('<path d="M4 5h16v11H9l-5 4z"/>'),
  hand: wrap('<path d="M8 13V5.5a1.5 1.5 0 0 1 3 0V11m0-6.5v-1a1.5 1.5 0 0 1 3 0V11m0-6a1.5 1.5 0 0 1 3 0v6m0-3.5a1.5 1.5 0 0 1 3 0V15a6 6 0 0 1-6 6h-1.5a6 6 0 0 1-4.9-2.6L4.3 14a1.5 1.5 0 0 1 2.4-1.8L8 14"/>'),
  stageUp: wrap('<path d="M12 3v10"/><path d="M8 7l4-4 4 4"/><line x1="5" y1="21" x2="19" y2="21"/>'),
  stageDown: wrap('<path d="M12 3v10"/><path d="M8 9l4 4 4-4"/><line x1="5" y1="21" x2="19" y2="21"/>'),
  people: wrap('<circle cx="9" cy="8" r="3"/><path d="M3 20a6 6 0 0 1 12 0"/><circle cx="17" cy="9" r="2.5"/><path d="M16 14.2a5 5 0 0 1 5 5.8"/>'),
  leave: wrap('<path d="M14 4h5v16h-5"/><path d="M10 8l-4 4 4 4"/><line x1="6" y1="12" x2="15" y2="12"/>'),
  copy: wrap('<rect x="8" y="8" width="12" height="12" rx="2"/><path d="M16 8V5a1 1 0 0 0-1-1H5a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h3"/>'),
  plus: wrap('<line x1="12" y1="5" x2="12" y2="19"/><line x1="5" y1="12" x2="19" y2="12"/>'),
  send: wrap('<path d="M4 12l16-8-6 16-3-7z"/>'),
  close: wrap('<line x1="6" y1="6" x2="18" y2="18"/><line x1="18" y1="6" x2="6" y2="18"/>'),
  speaker: wrap('<path d="M4 9h4l5-4v14l-5-4H4z"/><path d="M17 9a4 4 0 0 1 0 6"/>'),
  lock: wrap('<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V8a4 4 0 0 1 8 0v3"/>'),
  unlock: wrap('<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V8a4 4 0 0 1 7.5-2"/>'),
  stop: wrap('<circle cx="12" cy="12" r="9"/><rect x="9" y="9" width="6" height="6" rx="1"/>'),
  check: wrap('<path d="M5 12l5 5 9-10"/>'),
  removeUser: wrap('<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20a6.5 6.5 0 0 1 13 0"/><line x1="17" y1="9" x2="22" y2="14"/><line x1="22" y1="9" x2="17" y2="14"/>'),
  clock: wrap('<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 2"/>'),
  door: wrap('<path d="M6 21V4a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v17"/><line x1="3" y1="21" x2="21" y2="21"/><circle cx="14.5" cy="12" r="1"/>'),
  calendar: wrap('<rect x="3" y="5" width="18" height="16" rx="2"/><line x1="3" y1="10" x2="21" y2="10"/><line x1="8" y1="3" x2="8" y2="7"/><line x1="16" y1="3" x2="16" y2="7"/>'),
  signOut: wrap('<path d="M10 4H5v16h5"/><path d="M15 8l4 4-4 4"/><line x1="19" y1="12" x2="9" y2="12"/>'),
  trash: wrap('<path d="M4 7h16"/><path d="M9 7V4h6v3"/><path d="M6 7l1 13h10l1-13"/>'),
  play: wrap('<path d="M7 4l13 8-13 8z"/>'),
  record: wrap('<circle cx="12" cy="12" r="8.5"/><circle cx="12" cy="12" r="4" fill="currentColor"/>'),
  recordStop: wrap('<circle cx="12" cy="12" r="8.5"/><rect x="8" y="8" width="8" height="8" rx="1" fill="currentColor"/>'),
  transcript: wrap('<rect x="4" y="3" width="16" height="18" rx="2"/><line x1="8" y1="8" x2="16" y2="8"/><line x1="8" y1="12" x2="16" y2="12"/><line x1="8" y1="16" x2="13" y2="16"/>'),
  refresh: wrap('<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>'),
};
