/*
 * One reward rule's page (SPEC §7.2, §7.7): its tiers, what settling the current window would grant
 * now (the preview, a page at a time), its settlements with settling a window by hand, and its grants.
 */
import { api } from './api.js';
import { field, input, onSubmit } from './forms.js';
import { grantsSection, rewardChips } from './grants.js';
import { lbHref } from './leaderboards.js';
import { ruleActions, rulePath } from './rewards.js';
import { go, render, rulesHref, setCrumbs } from './router.js';
import { card, dataTable, el, enc, errorBlock, listOf, loadingBlock, mono, pagedList, plural, statusBadge, timeEl, toast, writeOnly } from './ui.js';

export async function viewRule(view, tenant, id) {
  setCrumbs([['Rewards', '#/rewards'], [tenant, rulesHref(tenant)], [id]]);
  const rule = await api('GET', rulePath(tenant, id));
  const grants = grantsSection(tenant, { sourceId: id, title: 'Grants of this rule' });
  const settlements = settlementsSection(tenant, id, () => grants.reload());
  const delay = rule.settle_delay_seconds ? `${rule.settle_delay_seconds} s after a window ends` : 'when a window ends';
  view.replaceChildren(
    el('div', { class: 'page-head' },
      el('div', null,
        el('h1', null, rule.name || rule.rule_id, ' ', statusBadge(rule.status)),
        el('p', { class: 'muted meta-line' }, mono(`${rule.tenant_id} / ${rule.rule_id}`), ' · leaderboard ',
          el('a', { href: lbHref(tenant, rule.leaderboard_id) }, mono(rule.leaderboard_id)),
          ` · version ${rule.version ?? '—'} · settles ${delay}`,
          rule.min_participants ? ` with at least ${plural(rule.min_participants, 'ranked player')}` : '')),
      el('div', { class: 'actions' }, ruleActions(rule, () => render(), () => go(rulesHref(tenant))))),
    tiersCard(rule.tiers), previewSection(tenant, id), settlements.node, grants.node);
}

const tierRanks = (t) => (t.top_percent != null ? `top ${t.top_percent}%`
  : t.rank_from === t.rank_to ? `rank ${t.rank_from}` : `ranks ${t.rank_from}–${t.rank_to}`);

function tiersCard(tiers) {
  const list = Array.isArray(tiers) ? tiers : [];
  return card(el('h2', { text: 'Tiers' }),
    el('p', { class: 'muted small list-summary', text: 'A player gets the rewards of the first tier, in this order, that holds their final rank.' }),
    dataTable([
      { label: '#', cell: (t) => String(list.indexOf(t) + 1) },
      { label: 'Ranks', cell: tierRanks },
      { label: 'Rewards', cell: (t) => rewardChips(t.rewards) },
    ], list, { id: 'tiers-table', empty: 'No tiers.' }));
}

/** What settling the current window would grant right now; nothing is granted. */
function previewSection(tenant, id) {
  const results = el('div', { class: 'paged', id: 'preview-results' });
  pagedList(results, {
    id: 'preview',
    fetchPage(cursor, limit) {
      return api('GET', `${rulePath(tenant, id)}/preview?limit=${limit}${cursor ? `&cursor=${enc(cursor)}` : ''}`);
    },
    draw: (data) => {
      const w = data.window || {};
      return [
        el('p', { class: 'muted small list-summary', id: 'preview-summary' }, 'Window ', mono(w.id || '—'), ' ', statusBadge(w.status || 'open'),
          ` · ${plural(data.ranked_entries ?? 0, 'ranked entry', 'ranked entries')} · ${plural(data.total ?? 0, 'grant')} if it were settled now`),
        dataTable([
          { label: 'Player', cell: (g) => el('strong', { text: g.user_id }) },
          { label: 'Rank', class: 'rank', cell: (g) => String(g.rank) },
          { label: 'Reward', cell: (g) => rewardChips([g.reward]) },
          { label: 'Grant ID', cell: (g) => mono(g.grant_id) },
        ], listOf(data, 'grants'), {
          id: 'preview-table',
          rowAttrs: (g) => ({ 'data-user': g.user_id, 'data-grant': g.grant_id }),
          empty: 'Nobody would get anything yet.',
          emptyHint: 'Rows appear as players rank in the current window.',
        }),
      ];
    },
  }).reload();
  return card(el('div', null, el('h2', { text: 'Preview' }),
    el('p', { class: 'muted small', text: 'What settling the current window would grant right now, with the grant ids it would use. Nothing is granted.' })),
  results);
}

/** The rule's settlements, newest window first, and (for ADMINs) settling an ended window by hand. */
function settlementsSection(tenant, id, onSettled) {
  const list = el('div', { id: 'settlements' }, loadingBlock());
  let settled = [];
  async function reload() {
    try {
      settled = listOf(await api('GET', `${rulePath(tenant, id)}/settlements`), 'settlements');
    } catch (err) {
      if (err.status !== 401) list.replaceChildren(errorBlock(err.message, reload));
      return;
    }
    list.replaceChildren(dataTable([
      { label: 'Window', cell: (s) => mono(s.window && s.window.id) },
      { label: 'Period', cell: (s) => el('span', { class: 'period' }, timeEl(s.window && s.window.starts_at), ' → ', timeEl(s.window && s.window.ends_at)) },
      { label: 'Settled', cell: (s) => timeEl(s.settled_at) },
      { label: 'Ranked entries', class: 'num', cell: (s) => String(s.ranked_entries ?? 0) },
      { label: 'Grants', class: 'num', cell: (s) => String(s.grants ?? 0) },
      { label: 'Rule version', class: 'num', cell: (s) => String(s.rule_version ?? '—') },
    ], settled, {
      id: 'settlements-table',
      rowAttrs: (s) => ({ 'data-window': s.window && s.window.id }),
      empty: 'No window settled yet.',
      emptyHint: 'A window is settled when it ends (after the settle delay), or by hand.',
    }));
  }
  const form = writeOnly(() => {
    const windowId = input('window_id', { id: 'settle-window', placeholder: 'e.g. a window id from the leaderboard\'s past windows' });
    const node = el('form', { class: 'inline-form', id: 'settle-form', novalidate: true },
      el('div', { class: 'form-summary', role: 'alert', hidden: true }),
      el('div', { class: 'inline-row' },
        field('Settle an ended window now', windowId, 'Also one that ended before the rule existed. Settling again changes nothing.'),
        el('button', { type: 'submit', class: 'btn primary', id: 'settle-submit', text: 'Settle window' })));
    onSubmit(node, async () => {
      const wanted = windowId.value.trim();
      const already = settled.some((s) => s.window && s.window.id === wanted);
      const s = await api('POST', `${rulePath(tenant, id)}/settle`, { window_id: wanted });
      node.reset();
      toast(already ? `Window ${s.window.id} was already settled` : `Window ${s.window.id} settled: ${plural(s.grants ?? 0, 'grant')}`, 'success');
      await reload();
      onSettled();
    });
    return node;
  });
  reload();
  return { node: card(el('h2', { text: 'Settlements' }), form, list) };
}

