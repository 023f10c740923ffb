/*
 * The coupons page of a tenant (SPEC §7.4): its campaigns (list and create) and looking up one code,
 * with its state and redemptions. A campaign's own page is campaign.js.
 */
import { ApiError, api } from './api.js';
import { cardForm, field, input, onSubmit, reasonDialog, toggleForm, wholeNumber } from './forms.js';
import { rewardChips } from './grants.js';
import { campaignHref, campaignsHref, setCrumbs } from './router.js';
import { canWrite } from './state.js';
import { tenantPicker, withTenant } from './tenants.js';
import { badge, btn, card, countCard, dataTable, el, enc, fill, listOf, mono, pageHead, plural, statusBadge, timeEl, toast, writeOnly } from './ui.js';

export const campaignPath = (t, id) => `/tenants/${enc(t)}/coupon-campaigns/${enc(id)}`;

const REWARDS_EXAMPLE = [{ type: 'currency', currency: 'gems', amount: 100 }, { type: 'item', item: 'vip_pass', quantity: 1 }];

/** A code's state in one word, and its badge. */
export function codeState(c) {
  if (c.voided_at) return badge('voided', 'muted');
  if (c.redeemed_at || c.redeemed_by) return badge('redeemed', 'ok');
  return badge(c.kind === 'shared' ? 'shared' : 'available', 'info');
}

/** Voids one code after asking why; `done(code)` runs once it is voided. */
export const voidCode = (tenant, code, done) => reasonDialog({
  title: `Void code ${code}?`, action: 'Void code',
  body: 'It can no longer be redeemed. Redemptions already made, and their grants, stay.',
  run: (reason) => api('POST', `/tenants/${enc(tenant)}/coupons/${enc(code)}/void`, { reason }),
}).then(async (voided) => {
  if (!voided) return;
  toast(`Code ${voided.code} voided`, 'success');
  await done(voided);
});

export async function viewCoupons(view, tenant) {
  if (tenant) view.dataset.tenant = tenant;
  setCrumbs(tenant ? [['Coupons', '#/coupons'], [tenant]] : [['Coupons']]);
  const subtitle = 'Campaigns of codes players redeem for rewards: one shared code, personal single-use codes, or both.';
  const tenants = await withTenant(view, tenant, { title: 'Coupons', subtitle, hrefFor: campaignsHref, pickerId: 'coupons-tenant' });
  if (!tenants) return;
  const list = el('div');
  async function reload() {
    const campaigns = listOf(await api('GET', `/tenants/${enc(tenant)}/coupon-campaigns`), 'campaigns');
    campaigns.sort((a, b) => a.campaign_id.localeCompare(b.campaign_id));
    list.replaceChildren(countCard(plural(campaigns.length, 'campaign'), campaignTable(tenant, campaigns)));
  }
  const form = writeOnly(() => campaignForm(tenant, async (c) => {
    toast(`Campaign ${c.campaign_id} created`, 'success');
    await reload();
  }));
  await reload();
  fill(view,
    pageHead('Coupons', subtitle, btn('New campaign', () => toggleForm(form), { write: true, kind: 'primary', id: 'campaign-new' })),
    el('div', { class: 'filter-bar' }, tenantPicker(tenants, tenant, campaignsHref, 'coupons-tenant')),
    form, list, codeLookup(tenant));
}

const limitText = (c) => (c.max_redemptions ? `${c.redemptions ?? 0} / ${c.max_redemptions}` : String(c.redemptions ?? 0));

function campaignTable(tenant, campaigns) {
  return dataTable([
    {
      label: 'Campaign',
      cell: (c) => el('div', null,
        el('a', { class: 'campaign-open strong', href: campaignHref(tenant, c.campaign_id), text: c.name || c.campaign_id }),
        el('div', { class: 'muted small' }, mono(c.campaign_id))),
    },
    { label: 'Shared code', cell: (c) => (c.code ? mono(c.code) : el('span', { class: 'muted', text: 'personal codes only' })) },
    { label: 'Rewards', cell: (c) => rewardChips(c.rewards) },
    { label: 'Redeemed', class: 'num', cell: limitText },
    { label: 'Per player', class: 'num', cell: (c) => String(c.per_player_limit ?? 1) },
    { label: 'Valid', cell: validity },
    { label: 'Status', cell: (c) => statusBadge(c.status) },
  ], campaigns, {
    id: 'campaigns-table',
    rowAttrs: (c) => ({ 'data-campaign': c.campaign_id }),
    empty: 'No campaigns yet.',
    emptyHint: canWrite() ? 'Create one with "New campaign" above.' : null,
  });
}

export function validity(c) {
  if (!c.starts_at && !c.expires_at) return el('span', { class: 'muted', text: 'always' });
  return el('span', { class: 'period' }, c.starts_at ? timeEl(c.starts_at) : 'now', ' → ', c.expires_at ? timeEl(c.expires_at) : 'no end');
}

/** A datetime-local value as RFC 3339 (the browser's time zone); blank: left out. */
function instant(raw) {
  if (!raw) return undefined;
  const d = new Date(raw);
  return Number.isNaN(d.getTime()) ? raw : d.toISOString();
}

function campaignForm(tenant, onCreated) {
  const rewards = el('textarea', {
    name: 'rewards', id: 'campaign-rewards', class: 'json-editor rewards-editor', rows: 6, spellcheck: 'false',
    text: JSON.stringify(REWARDS_EXAMPLE, null, 2),
  });
  const form = cardForm({ id: 'campaign-form', title: 'New campaign', submitId: 'campaign-create-submit', submitLabel: 'Create campaign' },
    el('div', { class: 'grid-3' },
      field('Campaign ID', input('campaign_id', { placeholder: 'vip-week' }), 'Letters, digits, - and _. Cannot be changed or used again.'),
      field('Name', input('name', { placeholder: 'VIP week' })),
      field('Shared code (optional)', input('code', { placeholder: 'LAUNCH2026' }), '4 to 32 letters, digits and dashes; any player may redeem it. Leave empty for personal codes only.')),
    el('div', { class: 'grid-3' },
      field('Max redemptions (optional)', input('max_redemptions', { inputmode: 'numeric', placeholder: 'no limit' }), 'All redemptions of the campaign, whatever the code.'),
      field('Per player', input('per_player_limit', { inputmode: 'numeric', placeholder: '1' }), 'How often one player may redeem the campaign.'),
      el('div')),
    el('div', { class: 'grid-3' },
      field('Starts (optional)', input('starts_at', { type: 'datetime-local' }), 'Your local time. Empty: now.'),
      field('Expires (optional)', input('expires_at', { type: 'datetime-local' }), 'Your local time. Empty: never.'),
      el('div')),
    field('Rewards (JSON)', rewards, 'What each redemption grants: 1 to 10 of currency {currency, amount}, item {item, quantity}, badge {badge} or custom {data}.'));
  onSubmit(form, async () => {
    const value = (name) => form.elements[name].value.trim();
    let parsed;
    try { parsed = JSON.parse(rewards.value); } catch (e) { throw new ApiError(400, 'VALIDATION_ERROR', `rewards: is not valid JSON (${e.message})`); }
    const body = {
      campaign_id: value('campaign_id'), name: value('name'), rewards: parsed,
      code: value('code') || undefined,
      max_redemptions: wholeNumber(value('max_redemptions')), per_player_limit: wholeNumber(value('per_player_limit')),
      starts_at: instant(value('starts_at')), expires_at: instant(value('expires_at')),
    };
    const created = await api('POST', `/tenants/${enc(tenant)}/coupon-campaigns`, body);
    form.reset();
    form.hidden = true;
    await onCreated(created);
  }, (message) => (/^code\b/.test(message) ? 'code' : 'campaign_id'));
  return form;
}

/** One code's state and redemptions, matched as players type it (any case, with or without dashes). */
function codeLookup(tenant) {
  const result = el('div', { id: 'coupon-result' });
  const code = el('input', { type: 'search', id: 'coupon-code', 'aria-label': 'Code', placeholder: 'A code, e.g. 7K3Q-9XWD-M2PA or LAUNCH2026' });
  const form = el('form', { class: 'filter-bar toolbar', id: 'coupon-lookup', novalidate: true }, code,
    el('button', { type: 'submit', class: 'btn secondary', id: 'coupon-lookup-submit', text: 'Look up' }));
  async function show(wanted) {
    if (!wanted) { result.replaceChildren(); return; }
    let c;
    try {
      c = await api('GET', `/tenants/${enc(tenant)}/coupons/${enc(wanted)}`);
    } catch (err) {
      if (err.status !== 401) result.replaceChildren(el('div', { class: 'alert error', role: 'alert', text: err.message }));
      return;
    }
    result.replaceChildren(
      el('div', { class: 'coupon-head' },
        el('div', null, mono(c.code), ' ', codeState(c), ' ', badge(c.kind, 'chip'), ' of ',
          el('a', { href: campaignHref(tenant, c.campaign_id) }, mono(c.campaign_id))),
        el('div', { class: 'muted small' },
          c.issued_to ? `issued to ${c.issued_to} · ` : '',
          c.voided_at ? ['voided ', timeEl(c.voided_at), c.void_reason ? ` (${c.void_reason})` : ''] : 'not voided'),
        c.voided_at ? null : btn('Void', () => voidCode(tenant, c.code, () => show(c.code)), { write: true, sm: true, kind: 'danger-ghost' })),
      redemptionTable(listOf(c, 'redemptions'), 'coupon-redemptions-table', 'Not redeemed yet.'));
  }
  form.addEventListener('submit', (ev) => { ev.preventDefault(); show(code.value.trim()); });
  return card(el('h2', { text: 'Look up a code' }), form, result);
}

export function redemptionTable(redemptions, id, empty) {
  return dataTable([
    { label: 'Redeemed', cell: (r) => timeEl(r.redeemed_at) },
    { label: 'Player', cell: (r) => el('strong', { text: r.user_id }) },
    { label: 'Code', cell: (r) => mono(r.code) },
    { label: 'Grants', cell: (r) => el('div', { class: 'muted small' }, (r.grant_ids || []).map((g) => el('div', null, mono(g)))) },
    { label: 'Redemption ID', cell: (r) => mono(r.redemption_id) },
  ], redemptions, { id, rowAttrs: (r) => ({ 'data-redemption': r.redemption_id, 'data-user': r.user_id }), empty });
}
