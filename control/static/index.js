// The home page: create a meeting (POST /api/v1/meetings) or join one by id or link.

import { fillIcons, toast, copyText } from './ui.js';

const $ = (id) => document.getElementById(id);

// Accepts a bare meeting id or any link whose path is /m/<id>.
export function meetingIdFrom(text) {
  const value = (text || '').trim();
  if (!value) return null;
  try {
    const url = new URL(value, window.location.origin);
    const match = /\/m\/([^/?#]+)/.exec(url.pathname);
    if (match) return decodeURIComponent(match[1]);
  } catch (e) { /* not a URL: a bare id */ }
  return /^[^/\s?#]+$/.test(value) ? value : null;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error.message || body.error.code;
  } catch (e) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

async function createMeeting() {
  const button = $('new-meeting');
  button.disabled = true;
  try {
    const response = await fetch('/api/v1/meetings', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: '{}',
    });
    if (!response.ok) {
      toast(`Could not create a meeting: ${await errorText(response)}`, 'error');
      return;
    }
    const meeting = await response.json();
    const link = new URL(meeting.join_url || `/m/${encodeURIComponent(meeting.meeting_id)}`, window.location.origin).href;
    $('join-link').value = link;
    $('join-created').href = link;
    $('created').hidden = false;
    $('join-link').select();
  } catch (err) {
    toast(`Could not reach the server: ${err.message}`, 'error');
  } finally {
    button.disabled = false;
  }
}

$('new-meeting').addEventListener('click', createMeeting);
$('copy-link').addEventListener('click', async () => {
  toast(await copyText($('join-link').value) ? 'Link copied.' : 'Copy failed: select the link and copy it.', 'info');
});
$('join-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = meetingIdFrom($('join-id').value);
  if (!id) {
    toast('That does not look like a meeting ID or link.', 'warn');
    return;
  }
  window.location.assign(`/m/${encodeURIComponent(id)}`);
});

fillIcons();
