/*
 * Past windows of a leaderboard and their frozen final standings, a page at a time.
 */
import { api } from './api.js';
import { lbHref, lbPath } from './leaderboards.js';
import { setCrumbs } from './router.js';
import { PAGE_SIZE, card, dataTable, el, emptyBlock, enc, errorBlock, fmtScore, listOf, loadingBlock, mono, pageHead, plural, statusBadge, timeEl } from './ui.js';

export function windowsSection(tenant, id) {
  const list = el('div', { class: 'windows-list' }, loadingBlock());
  const standings = el('div', { id: 'window-standings', class: 'window-standings' },
    emptyBlock('Choose a window', 'Its frozen final standings appear here.'));
  const node = card(el('h2', { text: 'Past windows' }), el('div', { class: 'windows-grid' }, list, standings));
  let selected = null;
  function open(windowId) {
    selected = windowId;
    list.querySelectorAll('tr[data-window]').forEach((tr) => tr.classList.toggle('selected', tr.dataset.window === windowId));
    windowStandings(standings, tenant, id, windowId);
  }
  const table = (windows) => dataTable([
    {
      label: 'Window',
      cell: (w) => el('a', {
        href: `#/windows/${enc(tenant)}/${enc(id)}/${enc(w.id)}`, class: 'window-link',
        onclick: (ev) => { ev.preventDefault(); open(w.id); },
      }, mono(w.id)),
    },
    { label: 'Period', cell: (w) => el('span', { class: 'period' }, timeEl(w.starts_at), ' → ', w.ends_at ? timeEl(w.ends_at) : 'no end') },
    { label: 'Status', cell: (w) => statusBadge(w.status || 'closed') },
  ], windows, { id: 'windows-table', rowAttrs: (w) => ({ 'data-window': w.id, class: w.id === selected ? 'selected' : null }) });
  async function reload() {
    try {
      const windows = listOf(await api('GET', `${lbPath(tenant, id)}/windows`), 'windows');
      windows.sort((a, b) => String(b.starts_at).localeCompare(String(a.starts_at)));
      list.replaceChildren(windows.length ? table(windows) : emptyBlock('No past windows yet.', 'Windows show up here once they close.'));
    } catch (err) {
      if (err.status !== 401) list.replaceChildren(errorBlock(err.message, reload));
    }
  }
  return { node, reload };
}

/** Frozen standings of one window, a page at a time. */
function windowStandings(container, tenant, id, windowId) {
  const cursors = [''];
  let page = 0;
  const turn = (by) => () => { page += by; load(); };
  async function load() {
    container.replaceChildren(loadingBlock());
    let data;
    try {
      const cursor = cursors[page] ? `&cursor=${enc(cursors[page])}` : ''; // the first page has none
      data = await api('GET', `${lbPath(tenant, id)}/windows/${enc(windowId)}?limit=${PAGE_SIZE}${cursor}`);
    } catch (err) {
      if (err.status !== 401) container.replaceChildren(errorBlock(err.message, load));
      return;
    }
    if (data.next_cursor) cursors[page + 1] = data.next_cursor;
    const w = data.window || {};
    const total = data.total_entries ?? 0;
    container.replaceChildren(
      el('div', { class: 'window-head' },
        el('div', null, el('strong', null, 'Window ', mono(w.id || windowId)), ' ', statusBadge(w.status || 'closed')),
        el('div', { class: 'muted small' }, timeEl(w.starts_at), ' → ', w.ends_at ? timeEl(w.ends_at) : 'no end',
          ` · ${plural(total, 'ranked entry', 'ranked entries')}`)),
      dataTable([
        { label: 'Rank', class: 'rank', cell: (e) => String(e.rank) },
        { label: 'Player', cell: (e) => e.user_id },
        { label: 'Score', class: 'score num', cell: (e) => fmtScore(e.score) },
        { label: 'Updated', class: 'num muted', cell: (e) => timeEl(e.updated_at) },
      ], listOf(data, 'entries'), { id: 'window-entries', rowAttrs: (e) => ({ 'data-user': e.user_id }), empty: 'Nobody scored in this window.' }),
      el('div', { class: 'pager' },
        page > 0 ? el('button', { type: 'button', class: 'btn secondary sm', id: 'window-prev', text: 'Previous page', onclick: turn(-1) }) : null,
        el('span', { class: 'muted small', text: `Page ${page + 1} of ${Math.max(1, Math.ceil(total / PAGE_SIZE))}` }),
        data.next_cursor ? el('button', { type: 'button', class: 'btn secondary sm', id: 'window-next', text: 'Next page', onclick: turn(1) }) : null));
  }
  load();
}

export async function viewWindow(view, tenant, id, windowId) {
  setCrumbs([['Leaderboards', '#/leaderboards'], [id, lbHref(tenant, id)], [`Window ${windowId}`]]);
  const standings = el('div', { id: 'window-standings', class: 'window-standings' });
  view.replaceChildren(
    pageHead(`Window ${windowId}`, `Final standings of ${tenant} / ${id}`,
      el('a', { class: 'btn secondary', href: lbHref(tenant, id), text: 'Back to leaderboard' })),
    card(null, standings));
  windowStandings(standings, tenant, id, windowId);
}
