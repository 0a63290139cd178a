// Small DOM helpers shared by the pages.

import { icons } from './icons.js';

// el('div', {class: 'x', dataset: {testid: 't'}}, child, 'text', ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'html') node.innerHTML = value;   // only ever our own icon markup
    else if (key in node && typeof value !== 'string') node[key] = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Fills every <span data-icon="name"> under root with its SVG.
export function fillIcons(root = document) {
  for (const span of root.querySelectorAll('[data-icon]')) {
    const svg = icons[span.dataset.icon];
    if (svg && !span.firstChild) span.innerHTML = svg;
  }
}

let toastBox = null;

// A short message in the corner that goes away by itself; errors stay a little longer.
export function toast(text, level = 'info') {
  toastBox ??= document.getElementById('toasts') || document.body.appendChild(el('div', { class: 'toasts' }));
  const close = el('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', html: icons.close });
  const item = el('div', {
    class: `toast toast-${level}`, role: level === 'error' ? 'alert' : 'status',
    dataset: { testid: level === 'error' ? 'error-toast' : 'toast' },
  }, el('span', {}, text), close);
  const remove = () => item.remove();
  close.addEventListener('click', remove);
  toastBox.append(item);
  while (toastBox.children.length > 4) toastBox.firstElementChild.remove();
  setTimeout(remove, level === 'error' ? 9000 : 5000);
  return item;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    // No clipboard API (plain http on another host): fall back to a selected textarea.
    const area = el('textarea', { class: 'visually-hidden', readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (err) { ok = false; }
    area.remove();
    return ok;
  }
}

export function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return letters.toUpperCase();
}

// A stable, pleasant background color per participant.
export function colorFor(key) {
  let hash = 0;
  for (const ch of String(key)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 45% 38%)`;
}

export function formatTime(ts) {
  const date = new Date(typeof ts === 'number' ? ts : Date.now());
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// Asks a yes/no question in the page's <dialog id="confirm">; resolves true on OK.
export function confirmDialog({ title, text = '', ok = 'OK' }) {
  const dialog = document.getElementById('confirm');
  if (!dialog || typeof dialog.showModal !== 'function') return Promise.resolve(window.confirm(`${title}\n${text}`));
  dialog.querySelector('#confirm-title').textContent = title;
  dialog.querySelector('#confirm-text').textContent = text;
  dialog.querySelector('#confirm-ok').textContent = ok;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    dialog.querySelector('#confirm-ok').focus();
  });
}
