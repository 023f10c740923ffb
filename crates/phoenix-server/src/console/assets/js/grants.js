/*
 * Grants, the ledger of what players earned (SPEC §7.3): a tenant's grants newest first, looked up by
 * player and status, a page at a time, with the void action for ADMINs. Also how a reward reads.
 */
import { api } from './api.js';
import { reasonDialog } from './forms.js';
import { achievementHref, campaignHref, ruleHref } from './router.js';
import { badge, btn, card, dataTable, el, enc, isObj, mono, pagedList, plural, timeEl, toast } from './ui.js';

/** One reward (SPEC §7.1) in a few words. */
function describeReward(r) {
  if (!isObj(r)) return String(r ?? '—');
  switch (r.type) {
    case 'currency': return `${r.amount} ${r.currency}`;
    case 'item': return `${r.quantity} × ${r.item}`;
    case 'badge': return `badge ${r.badge}`;
    case 'coupon': return `a code of ${r.campaign_id}`;
    case 'custom': return `custom ${JSON.stringify(r.data ?? {})}`;
    default: return JSON.stringify(r);
  }
}

export const rewardChips = (rewards) => el('div', { class: 'chips' },
  (Array.isArray(rewards) ? rewards : []).map((r) => badge(describeReward(r), 'chip')));

const GRANT_BADGES = { pending: 'info', claimed: 'ok', voided: 'muted' };

function sourceCell(tenant, s) {
  if (!isObj(s)) return '—';
  if (s.kind === 'reward_rule') {
    return el('div', null, el('a', { href: ruleHref(tenant, s.id) }, mono(s.id)),
      el('div', { class: 'muted small', text: `window ${s.window_id ?? '—'} · rank ${s.rank ?? '—'}` }));
  }
  if (s.kind === 'coupon') {
    return el('div', null, el('a', { href: campaignHref(tenant, s.id) }, mono(s.id)),
      el('div', { class: 'muted small' }, 'code ', mono(s.code ?? '—')));
  }
  if (s.kind === 'achievement') {
    return el('div', null, el('a', { href: achievementHref(tenant, s.id) }, mono(s.id)),
      el('div', { class: 'muted small', text: `step ${s.step ?? '—'} · threshold ${s.threshold ?? '—'}` }));
  }
  return el('div', null, mono(s.id), el('div', { class: 'muted small', text: s.kind }));
}

/**
 * A tenant's grants, newest first: all of them, or one player's (and/or one status); `sourceId` limits
 * the list to one rule's or campaign's grants. Returns `{node, reload}`.
 */
export function grantsSection(tenant, { sourceId, title = 'Grants' } = {}) {
  const filters = { user_id: '', status: '' };
  const results = el('div', { class: 'paged', id: 'grants-results' });
  const user = el('input', { type: 'search', id: 'grants-user', 'aria-label': 'Player', placeholder: 'A player\'s user_id (empty: every player)' });
  const status = el('select', { id: 'grants-status', 'aria-label': 'Status' },
    el('option', { value: '', text: 'Any status' }), ['pending', 'claimed', 'voided'].map((s) => el('option', { value: s, text: s })));
  const lookup = el('form', { class: 'filter-bar toolbar', id: 'grants-lookup', novalidate: true }, user, status,
    el('button', { type: 'submit', class: 'btn secondary', id: 'grants-lookup-submit', text: 'Look up' }));
  lookup.addEventListener('submit', (ev) => { ev.preventDefault(); filters.user_id = user.value.trim(); list.reload(); });
  status.addEventListener('change', () => { filters.status = status.value; list.reload(); });

  const voidGrant = (g) => reasonDialog({
    title: `Void this grant of ${g.user_id}?`, action: 'Void grant',
    body: `${describeReward(g.reward)}: the player can no longer claim it (if it was claimed, the game keeps the goods; the grant is recorded as voided).`,
    run: (reason) => api('POST', `/tenants/${enc(tenant)}/grants/${enc(g.grant_id)}/void`, { reason }),
  }).then((voided) => {
    if (!voided) return;
    toast(`Grant of ${g.user_id} voided`, 'success');
    list.refresh();
  });

  const draw = (data) => [
    el('p', { class: 'muted small list-summary', id: 'grants-total',
      text: `${plural(data.total ?? 0, 'grant')}${filters.user_id ? ` of ${filters.user_id}` : ''}${filters.status ? `, ${filters.status}` : ''}, newest first` }),
    dataTable([
      { label: 'Player', cell: (g) => el('strong', { text: g.user_id }) },
      {
        label: 'Reward',
        cell: (g) => el('div', null, describeReward(g.reward), g.coupon_code ? el('div', { class: 'muted small' }, 'code ', mono(g.coupon_code)) : null),
      },
      { label: 'Source', cell: (g) => sourceCell(tenant, g.source) },
      {
        label: 'Status',
        cell: (g) => el('div', null, badge(g.status, GRANT_BADGES[g.status]),
          g.void_reason ? el('div', { class: 'muted small', text: g.void_reason }) : null),
      },
      { label: 'Created', cell: (g) => timeEl(g.created_at) },
      { label: 'Grant ID', cell: (g) => mono(g.grant_id) },
      { label: '', class: 'row-actions', cell: (g) => (g.status === 'voided' ? null : btn('Void', () => voidGrant(g), { write: true, sm: true, kind: 'danger-ghost' })) },
    ], data.grants || [], {
      id: 'grants-table',
      rowAttrs: (g) => ({ 'data-grant': g.grant_id, 'data-user': g.user_id, 'data-status': g.status }),
      empty: filters.user_id ? `No grants for ${filters.user_id}.` : 'No grants yet.',
      emptyHint: 'Grants appear when a reward rule settles a window or a player redeems a coupon.',
    }),
  ];

  const list = pagedList(results, {
    id: 'grants',
    draw,
    fetchPage(cursor, limit) {
      const q = new URLSearchParams({ limit: String(limit) });
      if (filters.user_id) q.set('user_id', filters.user_id);
      if (filters.status) q.set('status', filters.status);
      if (sourceId) q.set('source_id', sourceId);
      if (cursor) q.set('cursor', cursor);
      return api('GET', `/tenants/${enc(tenant)}/grants?${q}`);
    },
  });
  list.reload();
  return { node: card(el('h2', { text: title }), lookup, results), reload: list.reload };
}
