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
  people: wrap('<circle cx="9" cy="8" r="3"/><path d="M3 20a6 6 0 0 1 12 0"/><circle cx="17" cy="9" r="2.5"/><path d="M16 14.2a5 5 0 0 1 5 5.8"/>'),
  leave: wrap('<path d="M14 4h5v16h-5"/><path d="M10 8l-4 4 4 4"/><line x1="6" y1="12" x2="15" y2="12"/>'),
  copy: wrap('<rect x="8" y="8" width="12" height="12" rx="2"/><path d="M16 8V5a1 1 0 0 0-1-1H5a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h3"/>'),
  plus: wrap('<line x1="12" y1="5" x2="12" y2="19"/><line x1="5" y1="12" x2="19" y2="12"/>'),
  send: wrap('<path d="M4 12l16-8-6 16-3-7z"/>'),
  close: wrap('<line x1="6" y1="6" x2="18" y2="18"/><line x1="18" y1="6" x2="6" y2="18"/>'),
  speaker: wrap('<path d="M4 9h4l5-4v14l-5-4H4z"/><path d="M17 9a4 4 0 0 1 0 6"/>'),
};
