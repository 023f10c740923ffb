/*
 * The rewards page of a tenant (SPEC §7.2, §7.3): its reward rules (list, create, activate, deactivate,
 * delete) and its grants. A rule's own page is rule.js.
 */
import { ApiError, api } from './api.js';
import { cardForm, field, input, onSubmit, select, toggleForm, wholeNumber } from './forms.js';
import { grantsSection } from './grants.js';
import { lbHref } from './leaderboards.js';
import { ruleHref, rulesHref, setCrumbs } from './router.js';
import { canWrite } from './state.js';
import { tenantPicker, withTenant } from './tenants.js';
import { act, btn, countCard, dataTable, el, enc, fill, listOf, mono, pageHead, plural, statusBadge, timeEl, toast, writeOnly } from './ui.js';

export const rulePath = (t, id) => `/tenants/${enc(t)}/reward-rules/${enc(id)}`;

/** What a new rule's tiers start as: one of each kind of tier, to edit. */
const TIERS_EXAMPLE = [
  { rank_from: 1, rank_to: 1, rewards: [{ type: 'currency', currency: 'gems', amount: 500 }, { type: 'badge', badge: 'champion' }] },
  { rank_from: 2, rank_to: 10, rewards: [{ type: 'item', item: 'chest_gold', quantity: 1 }] },
  { top_percent: 50, rewards: [{ type: 'currency', currency: 'gems', amount: 50 }] },
];

export async function viewRewards(view, tenant) {
  if (tenant) view.dataset.tenant = tenant;
  setCrumbs(tenant ? [['Rewards', '#/rewards'], [tenant]] : [['Rewards']]);
  const subtitle = 'Prizes for the final ranks of each window of a leaderboard, and what players earned.';
  const tenants = await withTenant(view, tenant, { title: 'Rewards', subtitle, hrefFor: rulesHref, pickerId: 'rewards-tenant' });
  if (!tenants) return;
  const list = el('div');
  // The form's leaderboard choice; a VIEWER gets no form.
  const boards = canWrite() ? listOf(await api('GET', `/tenants/${enc(tenant)}/leaderboards`), 'leaderboards') : [];
  async function reload() {
    const rules = listOf(await api('GET', `/tenants/${enc(tenant)}/reward-rules`), 'reward_rules');
    rules.sort((a, b) => a.rule_id.localeCompare(b.rule_id));
    list.replaceChildren(countCard(plural(rules.length, 'reward rule'), ruleTable(tenant, rules, reload)));
  }
  const form = writeOnly(() => ruleForm(tenant, boards, async (rule) => {
    toast(`Reward rule ${rule.rule_id} created`, 'success');
    await reload();
  }));
  await reload();
  fill(view,
    pageHead('Rewards', subtitle, btn('New reward rule', () => toggleForm(form), { write: true, kind: 'primary', id: 'rule-new' })),
    el('div', { class: 'filter-bar' }, tenantPicker(tenants, tenant, rulesHref, 'rewards-tenant')),
    form, list, grantsSection(tenant).node);
}

function ruleTable(tenant, rules, reload) {
  return dataTable([
    {
      label: 'Rule',
      cell: (r) => el('div', null,
        el('a', { class: 'rule-open strong', href: ruleHref(tenant, r.rule_id), text: r.name || r.rule_id }),
        el('div', { class: 'muted small' }, mono(r.rule_id))),
    },
    { label: 'Leaderboard', cell: (r) => el('a', { href: lbHref(tenant, r.leaderboard_id) }, mono(r.leaderboard_id)) },
    { label: 'Status', cell: (r) => statusBadge(r.status) },
    { label: 'Tiers', class: 'num', cell: (r) => String(Array.isArray(r.tiers) ? r.tiers.length : '—') },
    { label: 'Min. players', class: 'num', cell: (r) => String(r.min_participants ?? 0) },
    { label: 'Delay', class: 'num', cell: (r) => `${r.settle_delay_seconds ?? 0} s` },
    { label: 'Ver.', class: 'num', cell: (r) => String(r.version ?? '—') },
    { label: 'Updated', cell: (r) => timeEl(r.updated_at) },
    { label: '', class: 'row-actions', cell: (r) => ruleActions(r, reload, reload) },
  ], rules, {
    id: 'rules-table',
    rowAttrs: (r) => ({ 'data-rule': r.rule_id }),
    empty: 'No reward rules yet.',
    emptyHint: canWrite() ? 'Create one with "New reward rule" above: it pays out when a window of its leaderboard ends.' : null,
  });
}

/** Activate or deactivate, and delete, one rule; nothing at all for VIEWERs. */
export function ruleActions(rule, onChanged, onDeleted) {
  if (!canWrite()) return null;
  const path = rulePath(rule.tenant_id, rule.rule_id);
  const label = rule.name || rule.rule_id;
  const setStatus = (status, ask) => act(ask, () => api('PATCH', path, { status }),
    async () => { toast(`"${label}" is now ${status}`, 'success'); await onChanged(); });
  const deactivate = {
    title: `Deactivate "${label}"?`, action: 'Deactivate',
    body: 'Windows that end while it is inactive are not settled by it (they can still be settled by hand).',
  };
  const remove = () => act({
    title: `Delete "${label}"?`, action: 'Delete rule', danger: true,
    body: 'It settles no more windows. Its settlements and the grants it made stay, and its id cannot be used again.',
  }, () => api('DELETE', path), async () => { toast(`"${label}" deleted`, 'success'); await onDeleted(); });
  return el('div', { class: 'btn-row' },
    rule.status === 'active'
      ? btn('Deactivate', () => setStatus('inactive', deactivate), { write: true, sm: true })
      : btn('Activate', () => setStatus('active'), { write: true, sm: true }),
    btn('Delete', remove, { write: true, sm: true, kind: 'danger-ghost' }));
}

function ruleForm(tenant, boards, onCreated) {
  // A rule settles windows that end: an all-time leaderboard has none.
  const usable = boards.filter((b) => !(b.config && b.config.timeframe && b.config.timeframe.type === 'all_time'));
  const board = select('leaderboard_id', [
    ['', usable.length ? 'Choose a leaderboard…' : 'No leaderboard whose windows end'],
    ...usable.map((b) => [b.leaderboard_id, b.name && b.name !== b.leaderboard_id ? `${b.leaderboard_id} (${b.name})` : b.leaderboard_id]),
  ], '');
  const tiers = el('textarea', {
    name: 'tiers', id: 'rule-tiers', class: 'json-editor tiers-editor', rows: 14, spellcheck: 'false',
    text: JSON.stringify(TIERS_EXAMPLE, null, 2),
  });
  const form = cardForm({ id: 'rule-form', title: 'New reward rule', submitId: 'rule-create-submit', submitLabel: 'Create rule' },
    el('div', { class: 'grid-3' },
      field('Rule ID', input('rule_id', { placeholder: 'weekly-podium' }), 'Letters, digits, - and _. Cannot be changed or used again.'),
      field('Leaderboard', board, 'Whose windows it settles. All-time leaderboards never end, so they are not listed.'),
      field('Name', input('name', { placeholder: 'Weekly podium' }))),
    el('div', { class: 'grid-3' },
      field('Minimum participants', input('min_participants', { inputmode: 'numeric', placeholder: '0' }), 'A window with fewer ranked players grants nothing.'),
      field('Settle delay (seconds)', input('settle_delay_seconds', { inputmode: 'numeric', placeholder: '0' }), 'Wait this long after a window ends (up to 86400), to act on cheaters before prizes go out.')),
    field('Tiers (JSON)', tiers, 'A player gets the rewards of the first tier that holds their final rank: {rank_from, rank_to} or {top_percent}, '
      + 'with 1 to 10 rewards: currency {currency, amount}, item {item, quantity}, badge {badge}, coupon {campaign_id} or custom {data}.'));
  onSubmit(form, async () => {
    const value = (name) => form.elements[name].value.trim();
    let parsed;
    try { parsed = JSON.parse(tiers.value); } catch (e) { throw new ApiError(400, 'VALIDATION_ERROR', `tiers: is not valid JSON (${e.message})`); }
    const body = {
      rule_id: value('rule_id'), leaderboard_id: value('leaderboard_id'), name: value('name'),
      min_participants: wholeNumber(value('min_participants')), settle_delay_seconds: wholeNumber(value('settle_delay_seconds')),
      tiers: parsed,
    };
    const created = await api('POST', `/tenants/${enc(tenant)}/reward-rules`, body);
    form.reset();
    form.hidden = true;
    await onCreated(created);
  }, 'rule_id');
  return form;
}
