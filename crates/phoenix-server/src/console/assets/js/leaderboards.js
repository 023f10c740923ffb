/*
 * The leaderboards page: the list with its filters and each record's status actions, and how a
 * leaderboard's timeframe and scoring are described.
 */
import { api } from './api.js';
import { toggleForm } from './forms.js';
import { leaderboardForm } from './leaderboard-form.js';
import { go, setCrumbs } from './router.js';
import { canWrite } from './state.js';
import { loadTenants } from './tenants.js';
import { act, btn, cap, countCard, dataTable, el, enc, fill, fmtTime, isObj, listOf, mono, pageHead, plural, statusBadge, timeEl, toast, writeOnly } from './ui.js';

const STATUSES = ['active', 'inactive', 'archived'];

export function describeTimeframe(tf) {
  if (!isObj(tf)) return '—';
  const at = `${tf.reset_time || '00:00'} ${tf.timezone || 'UTC'}`;
  switch (tf.type) {
    case 'daily': return `Daily, resets ${at}`;
    case 'weekly': return `Weekly, resets ${cap(tf.reset_day || '?')} ${at}`;
    case 'monthly': return `Monthly, resets day ${tf.reset_day_of_month || 1} ${at}`;
    case 'all_time': return 'All time';
    case 'custom': return `Custom, ${fmtTime(tf.starts_at)} → ${fmtTime(tf.ends_at)}`;
    default: return String(tf.type || '—');
  }
}

export function describeScoring(sc) {
  if (!isObj(sc)) return '—';
  const types = listOf(sc, 'rules').map((r) => r && r.event_type).filter(Boolean).join(', ');
  return `${sc.aggregation || 'sum'} of ${types || 'no events'}`;
}

export const lbHref = (t, id) => `#/leaderboards/${enc(t)}/${enc(id)}`;
export const lbPath = (t, id) => `/tenants/${enc(t)}/leaderboards/${enc(id)}`;

export async function viewLeaderboards(view, tenantFilter) {
  setCrumbs(tenantFilter ? [['Leaderboards', '#/leaderboards'], [tenantFilter]] : [['Leaderboards']]);
  const tenants = await loadTenants().catch(() => []);
  const list = el('div');
  const filters = { status: '', text: '' };
  let records = [];
  const draw = () => list.replaceChildren(countCard(plural(records.length, 'leaderboard'),
    leaderboardTable(records.filter((r) => matchesFilter(r, filters)), reload)));
  async function reload() {
    records = listOf(await api('GET', tenantFilter ? `/tenants/${enc(tenantFilter)}/leaderboards` : '/leaderboards'), 'leaderboards');
    records.sort((a, b) => `${a.tenant_id}/${a.leaderboard_id}`.localeCompare(`${b.tenant_id}/${b.leaderboard_id}`));
    draw();
  }
  const form = writeOnly(() => leaderboardForm(tenants, tenantFilter, async (rec) => {
    toast(`Leaderboard ${rec.leaderboard_id} created`, 'success');
    await reload();
  }));
  await reload();
  fill(view,
    pageHead('Leaderboards', 'Competitions scored from your game events, with live rankings per time window.',
      btn('New leaderboard', () => toggleForm(form), { write: true, kind: 'primary', id: 'lb-new' })),
    form, filterBar(tenants, tenantFilter, filters, draw), list);
}

function matchesFilter(r, f) {
  if (f.status && r.status !== f.status) return false;
  const hay = `${r.leaderboard_id} ${r.name || ''} ${r.description || ''} ${r.tenant_id}`.toLowerCase();
  return !f.text || hay.includes(f.text.toLowerCase());
}

function filterBar(tenants, tenantFilter, filters, redraw) {
  const tenantSel = el('select', { id: 'lb-filter-tenant', 'aria-label': 'Tenant', value: tenantFilter || '' },
    el('option', { value: '', text: 'All tenants' }), tenants.map((t) => el('option', { value: t.tenant_id, text: t.tenant_id })));
  tenantSel.addEventListener('change', () => go(tenantSel.value ? `#/leaderboards/${enc(tenantSel.value)}` : '#/leaderboards'));
  const statusSel = el('select', { id: 'lb-filter-status', 'aria-label': 'Status' },
    el('option', { value: '', text: 'Any status' }), STATUSES.map((s) => el('option', { value: s, text: s })));
  statusSel.addEventListener('change', () => { filters.status = statusSel.value; redraw(); });
  const search = el('input', { type: 'search', id: 'lb-filter-text', 'aria-label': 'Search', placeholder: 'Search by id, name or description' });
  search.addEventListener('input', () => { filters.text = search.value.trim(); redraw(); });
  return el('div', { class: 'filter-bar' }, tenantSel, statusSel, search);
}

function leaderboardTable(records, reload) {
  return dataTable([
    {
      label: 'Leaderboard',
      cell: (r) => el('div', null,
        el('a', { class: 'lb-open strong', href: lbHref(r.tenant_id, r.leaderboard_id), text: r.name || r.leaderboard_id }),
        el('div', { class: 'muted small' }, mono(r.leaderboard_id))),
    },
    { label: 'Tenant', cell: (r) => mono(r.tenant_id) },
    { label: 'Status', cell: (r) => statusBadge(r.status) },
    { label: 'Timeframe', cell: (r) => describeTimeframe(r.config && r.config.timeframe) },
    { label: 'Scoring', cell: (r) => describeScoring(r.config && r.config.scoring) },
    { label: 'Ver.', class: 'num', cell: (r) => String(r.version ?? '—') },
    { label: 'Updated', cell: (r) => timeEl(r.updated_at) },
    { label: '', class: 'row-actions', cell: (r) => lbActions(r, reload, reload) },
  ], records, {
    id: 'lb-table',
    rowAttrs: (r) => ({ 'data-tenant': r.tenant_id, 'data-id': r.leaderboard_id }),
    empty: 'No leaderboards match.',
    emptyHint: canWrite() ? 'Create one with "New leaderboard" above.' : null,
  });
}

/** Status changes and delete for one record; nothing at all for VIEWERs. */
export function lbActions(rec, onChanged, onDeleted) {
  if (!canWrite()) return null;
  const path = lbPath(rec.tenant_id, rec.leaderboard_id);
  const label = rec.name || rec.leaderboard_id;
  const stops = 'It stops scoring events and live viewers are disconnected. You can activate it again later.';
  const setStatus = (status, verb) => act(verb && { title: `${verb} "${label}"?`, body: stops, action: verb },
    () => api('PATCH', path, { status }),
    async () => { toast(`"${label}" is now ${status}`, 'success'); await onChanged(); });
  const remove = () => act({
    title: `Delete "${label}"?`, action: 'Delete leaderboard', danger: true,
    body: 'The configuration is removed and live viewers are disconnected. Past windows stay readable by their ids.',
  }, () => api('DELETE', path), async () => { toast(`"${label}" deleted`, 'success'); await onDeleted(); });
  return el('div', { class: 'btn-row' },
    rec.status !== 'active' ? btn('Activate', () => setStatus('active'), { write: true, sm: true }) : null,
    rec.status === 'active' ? btn('Deactivate', () => setStatus('inactive', 'Deactivate'), { write: true, sm: true }) : null,
    rec.status !== 'archived' ? btn('Archive', () => setStatus('archived', 'Archive'), { write: true, sm: true }) : null,
    btn('Delete', remove, { write: true, sm: true, kind: 'danger-ghost' }));
}
