// The home page: go to a meeting by its Meeting ID or invitation link, or sign in to host.

import { parseMeetingInput, meetingPath } from './api.js';
import { fillIcons } from './ui.js';

const $ = (id) => document.getElementById(id);

$('join-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const target = parseMeetingInput($('join-id').value);
  const error = $('join-id-error');
  if (!target) {
    error.textContent = 'A Meeting ID has 11 digits, like 123-4567-8901; a link looks like …/m/12345678901.';
    error.hidden = false;
    $('join-id').focus();
    return;
  }
  error.hidden = true;
  window.location.assign(meetingPath(target.number, target.linkToken));
});

fillIcons();
$('join-id').focus();
