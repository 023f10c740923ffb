/*
 * DOM building and the pieces every page uses: the el() helper (server data only ever goes through
 * textContent and attributes), write controls that VIEWERs never get, formatting, toasts, confirm
 * dialogs, one-time secrets, tables and cards.
 */
import { canWrite } from './state.js';

export const root = () => document.getElementById('app');

/** Rows per page of every paged list. */
export const PAGE_SIZE = 50;

// ------------------------------------------------------------------ DOM helpers
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  let value;
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'value') value = v;
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  append(node, children);
  if (value !== undefined) node.value = value;
  return node;
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replaces a node's children, skipping null and false like el() (a VIEWER's missing write form). */
export const fill = (node, ...children) => { node.replaceChildren(); return append(node, children); };

export const enc = encodeURIComponent;
export const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
export const clone = (v) => JSON.parse(JSON.stringify(v ?? {}));
export const listOf = (data, key) => (data && Array.isArray(data[key]) ? data[key] : []);

/** Builds a write control and marks it; returns null for VIEWERs so it is never rendered. */
export function writeOnly(build) {
  if (!canWrite()) return null;
  const node = build();
  node.setAttribute('data-write', '');
  return node;
}

export function btn(label, onclick, opts = {}) {
  const make = () => el('button', {
    type: opts.type || 'button', id: opts.id, onclick,
    class: ['btn', opts.kind || 'secondary', opts.sm ? 'sm' : ''].join(' ').trim(),
  }, label);
  return opts.write ? writeOnly(make) : make();
}

export const badge = (text, kind) => el('span', { class: `badge ${kind || ''}`.trim(), text });
export const mono = (text) => el('code', { class: 'mono', text });
export const statusBadge = (s) => badge(s, { active: 'ok', inactive: 'warn', archived: 'muted', open: 'ok', closed: 'muted', upcoming: 'info' }[s]);
export const cap = (s) => String(s).charAt(0).toUpperCase() + String(s).slice(1);
export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function fmtTime(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return iso ? String(iso) : '—';
  const year = d.getFullYear() === new Date().getFullYear() ? undefined : 'numeric';
  return d.toLocaleString(undefined, { year, month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
}

export function fmtClock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return fmtTime(iso);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString(undefined, { hour12: false }) : fmtTime(iso);
}

export const timeEl = (iso, fmt = fmtTime) => (iso ? el('time', { datetime: iso, title: iso, text: fmt(iso) }) : '—');
export const fmtScore = (n) => (typeof n === 'number' ? n.toLocaleString(undefined, { maximumFractionDigits: 3 }) : String(n ?? '—'));

// ------------------------------------------------------------------ feedback
export function toast(message, kind = 'info') {
  const node = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status', text: message });
  document.getElementById('toasts').append(node);
  setTimeout(() => node.classList.add('leaving'), 3600);
  setTimeout(() => node.remove(), 4000);
}

export const loadingBlock = (text = 'Loading…') => el('div', { class: 'loading' }, el('span', { class: 'spinner' }), text);
export const emptyBlock = (title, hint) => el('div', { class: 'empty' }, el('strong', { text: title }), hint ? el('p', { text: hint }) : null);
export const errorBlock = (message, retry) => el('div', { class: 'alert error', role: 'alert' },
  el('span', { text: message }), retry ? btn('Try again', retry, { sm: true }) : null);
const reportError = (err) => { if (err && err.status !== 401) toast(err.message || String(err), 'error'); };

/** A modal on <dialog>; resolves true when the action is confirmed. */
function confirmAction({ title, body, action = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const dlg = el('dialog', { class: 'modal', 'aria-labelledby': 'modal-title' });
    const ok = writeOnly(() => el('button', { type: 'button', class: `btn ${danger ? 'danger' : 'primary'}`, text: action, onclick: () => dlg.close('ok') }));
    const cancel = el('button', { type: 'button', class: 'btn secondary', text: 'Cancel', onclick: () => dlg.close('cancel') });
    append(dlg, [el('h2', { id: 'modal-title', text: title }), el('p', { text: body }), el('div', { class: 'modal-actions' }, cancel, ok)]);
    dlg.addEventListener('close', () => { dlg.remove(); resolve(dlg.returnValue === 'ok'); });
    document.body.append(dlg);
    dlg.showModal();
    (danger || !ok ? cancel : ok).focus();
  });
}

/** Asks first (when `ask` is given), runs a write, then reports: the pattern of every row action. */
export async function act(ask, run, done) {
  if (ask && !(await confirmAction(ask))) return;
  try { await done(await run()); } catch (err) { reportError(err); }
}

export function secretBox(title, secret, note) {
  const copy = el('button', { type: 'button', class: 'btn secondary sm', text: 'Copy' });
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(secret); copy.textContent = 'Copied'; } catch { copy.textContent = 'Select and copy'; }
    setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
  });
  const box = el('section', { class: 'secret-box', role: 'status' },
    el('div', { class: 'secret-head' }, el('strong', { text: title }),
      el('button', { type: 'button', class: 'btn ghost sm', text: 'Done', onclick: () => box.remove() })),
    el('p', { class: 'secret-warning', text: 'Copy it now: it will not be shown again. Keep it in a secret manager.' }),
    el('div', { class: 'secret-value' }, el('code', { id: 'secret-value', text: secret }), copy),
    note ? el('p', { class: 'muted small', text: note }) : null);
  return box;
}

// ------------------------------------------------------------------ layout pieces
/** columns: [{label, cell(row) -> node|string, class}] */
export function dataTable(columns, rows, opts = {}) {
  if (!rows.length) return emptyBlock(opts.empty || 'Nothing here yet.', opts.emptyHint);
  return el('div', { class: 'table-wrap' }, el('table', { class: 'data', id: opts.id },
    el('thead', null, el('tr', null, columns.map((c) => el('th', { class: c.class, text: c.label })))),
    el('tbody', null, rows.map((r) => el('tr', opts.rowAttrs ? opts.rowAttrs(r) : null,
      columns.map((c) => el('td', { class: c.class }, c.cell(r))))))));
}

export const pageHead = (title, subtitle, ...actions) => el('div', { class: 'page-head' },
  el('div', null, el('h1', { text: title }), subtitle ? el('p', { class: 'muted', text: subtitle }) : null),
  el('div', { class: 'actions' }, actions));

export const card = (title, ...children) => el('section', { class: 'card' }, title ? el('div', { class: 'card-head' }, title) : null, children);
export const countCard = (text, body) => card(el('h2', { text }), body);

/**
 * A keyset-paged list drawn into `container`: `fetchPage(cursor, limit)` answers `{total, next_cursor,
 * ...}` (the first page's cursor is '') and `draw(data)` makes the page's nodes. Each page's cursor is
 * kept, so Previous goes back exactly. `reload()` starts again at the first page; `refresh()` draws the
 * current page again (after a change to one of its rows).
 */
export function pagedList(container, { id, fetchPage, draw }) {
  let cursors = [''];
  let page = 0;
  let latest = 0; // only the last load started may draw
  const turn = (by) => () => { page += by; load(); };
  async function load() {
    const mine = ++latest;
    container.replaceChildren(loadingBlock());
    let data;
    try {
      data = await fetchPage(cursors[page], PAGE_SIZE);
    } catch (err) {
      if (mine === latest && err.status !== 401) container.replaceChildren(errorBlock(err.message, load));
      return;
    }
    if (mine !== latest) return;
    cursors = cursors.slice(0, page + 1);
    if (data.next_cursor) cursors[page + 1] = data.next_cursor;
    const pages = Math.max(1, Math.ceil((data.total ?? 0) / PAGE_SIZE));
    const pager = page > 0 || data.next_cursor ? el('div', { class: 'pager' },
      page > 0 ? el('button', { type: 'button', class: 'btn secondary sm', id: `${id}-prev`, text: 'Previous page', onclick: turn(-1) }) : null,
      el('span', { class: 'muted small', text: `Page ${page + 1} of ${pages}` }),
      data.next_cursor ? el('button', { type: 'button', class: 'btn secondary sm', id: `${id}-next`, text: 'Next page', onclick: turn(1) }) : null) : null;
    container.replaceChildren();
    append(container, [draw(data), pager]);
  }
  return {
    reload() { cursors = ['']; page = 0; return load(); },
    refresh: load,
  };
}
