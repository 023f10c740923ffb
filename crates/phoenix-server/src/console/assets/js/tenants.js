/*
 * The tenants page: list, create (the HMAC secret shown once), settings and secret rotation; and
 * the tenant choice of the pages that work on one tenant at a time (rewards, coupons).
 */
import { api } from './api.js';
import { cardForm, field, input, onSubmit, select, toggleForm } from './forms.js';
import { go, setCrumbs } from './router.js';
import { canWrite } from './state.js';
import { act, badge, btn, countCard, dataTable, el, emptyBlock, enc, fill, listOf, mono, pageHead, plural, secretBox, timeEl, toast, writeOnly } from './ui.js';

export const loadTenants = async () => listOf(await api('GET', '/tenants'), 'tenants');

let lastTenant = null; // the tenant last shown on a per-tenant page (rewards, coupons)

/** The tenant a per-tenant page shows when its route names none: the last one shown, else the only one. */
function tenantToShow(tenants) {
  if (tenants.some((t) => t.tenant_id === lastTenant)) return lastTenant;
  return tenants.length === 1 ? tenants[0].tenant_id : null;
}

/** A tenant select for a per-tenant page: choosing one goes to `hrefFor(tenant)`. */
export function tenantPicker(tenants, current, hrefFor, id) {
  if (current) lastTenant = current;
  const sel = el('select', { id, class: 'tenant-picker', 'aria-label': 'Tenant', value: current || '' },
    current ? null : el('option', { value: '', text: 'Choose a tenant…' }),
    tenants.map((t) => el('option', { value: t.tenant_id, text: t.name ? `${t.tenant_id} (${t.name})` : t.tenant_id })));
  sel.addEventListener('change', () => { if (sel.value) go(hrefFor(sel.value)); });
  return sel;
}

/**
 * A page that works on one tenant: when the route names none, goes to the last one shown (or the
 * only one), else asks. Returns the tenants, or null when the page has been drawn already.
 */
export async function withTenant(view, tenant, { title, subtitle, hrefFor, pickerId }) {
  const tenants = await loadTenants();
  if (tenant) return tenants;
  const known = tenantToShow(tenants);
  if (known) { location.replace(hrefFor(known)); return null; }
  fill(view, pageHead(title, subtitle),
    tenants.length
      ? el('div', { class: 'filter-bar' }, tenantPicker(tenants, null, hrefFor, pickerId))
      : null,
    tenants.length ? emptyBlock('Choose a tenant', 'Rewards, coupons, achievements and webhooks belong to one tenant.') : emptyBlock('No tenants yet.'));
  return null;
}

export async function viewTenants(view) {
  setCrumbs([['Tenants']]);
  const slot = el('div', { class: 'slot' });
  const list = el('div');
  const reload = async () => {
    const tenants = await loadTenants();
    list.replaceChildren(countCard(plural(tenants.length, 'tenant'), tenantTable(tenants, slot, reload)));
  };
  const form = writeOnly(() => tenantForm(async (created) => {
    slot.replaceChildren(secretBox(`HMAC secret for tenant ${created.tenant_id}`, created.hmac_secret,
      'Game servers sign player JWTs and admin requests with this secret.'));
    toast(`Tenant ${created.tenant_id} created`, 'success');
    await reload();
  }));
  await reload();
  fill(view,
    pageHead('Tenants', 'Each tenant is an isolated game or environment with its own signing secret.',
      btn('New tenant', () => toggleForm(form), { write: true, kind: 'primary', id: 'tenant-new' })),
    slot, form, list);
}

function tenantForm(onCreated) {
  const form = cardForm({ id: 'tenant-form', title: 'New tenant', submitId: 'tenant-create-submit', submitLabel: 'Create tenant' },
    el('div', { class: 'grid-2' },
      field('Tenant ID', input('tenant_id', { placeholder: 'tenant-prod-001' }), 'Letters, digits, hyphens and underscores. Cannot be changed.'),
      field('Display name', input('name', { placeholder: 'My Game (production)' }))));
  onSubmit(form, async () => {
    const body = { tenant_id: form.elements.tenant_id.value.trim(), name: form.elements.name.value.trim() };
    const created = await api('POST', '/tenants', body);
    form.reset();
    form.hidden = true;
    await onCreated(created);
  }, 'tenant_id');
  return form;
}

const RATE_FIELDS = [
  ['events_per_second', 'Events per second', 'Every event of a batch counts.'],
  ['reads_per_second', 'Reads per second', 'Player reads, WebSocket upgrades and messages.'],
  ['player_requests_per_second', 'Requests per second per player', 'So one player cannot use up the tenant\'s budget.'],
];

const rateText = (v) => (v === null || v === undefined ? 'default' : v === 0 ? 'unlimited' : `${v}/s`);

/** Name, whether tokens without a scope are accepted, and rate limits (blank = the server's default). */
function tenantSettingsForm(t, onSaved) {
  const limits = t.rate_limits || {};
  const form = cardForm({ id: 'tenant-settings-form', title: `Settings of ${t.tenant_id}`, submitId: 'tenant-settings-submit', submitLabel: 'Save settings' },
    el('div', { class: 'grid-2' },
      field('Display name', input('name', { value: t.name || '' })),
      field('Tokens without a scope', select('unscoped_tokens', [['allow', 'Accepted (as in the original API)'], ['deny', 'Refused (403)']], t.unscoped_tokens || 'allow'),
        'Game clients should get tokens scoped "leaderboards:read rewards:redeem"; refusing unscoped ones closes their sockets.')),
    el('div', { class: 'grid-3' }, RATE_FIELDS.map(([name, label, hint]) => field(label,
      input(`rate_limits.${name}`, { inputmode: 'numeric', placeholder: 'default', value: limits[name] === null || limits[name] === undefined ? '' : String(limits[name]) }),
      `${hint} Blank: the server's default; 0: unlimited.`))));
  form.elements.unscoped_tokens.value = t.unscoped_tokens || 'allow';
  onSubmit(form, async () => {
    const rate_limits = {};
    for (const [name] of RATE_FIELDS) {
      const raw = form.elements[`rate_limits.${name}`].value.trim();
      rate_limits[name] = raw === '' ? null : (/^\d+$/.test(raw) ? Number(raw) : raw);
    }
    const body = { name: form.elements.name.value.trim(), unscoped_tokens: form.elements.unscoped_tokens.value, rate_limits };
    const saved = await api('PATCH', `/tenants/${enc(t.tenant_id)}`, body);
    form.hidden = true;
    await onSaved(saved);
  }, 'name');
  return form;
}

function tenantTable(tenants, slot, reload) {
  const edit = (t) => {
    const form = tenantSettingsForm(t, async (saved) => {
      slot.replaceChildren();
      toast(`Tenant ${saved.tenant_id} saved`, 'success');
      await reload();
    });
    slot.replaceChildren(form);
    toggleForm(form);
  };
  const rotate = (t) => act({
    title: `Rotate the secret of ${t.tenant_id}?`, action: 'Rotate secret',
    body: 'A new HMAC secret is issued. The current one keeps working for a grace period (24 hours by default) so clients can switch over.',
  }, () => api('POST', `/tenants/${enc(t.tenant_id)}/secret:rotate`, {}), (res) => {
    slot.replaceChildren(secretBox(`New HMAC secret for tenant ${t.tenant_id}`, res.hmac_secret,
      'Roll it out to your game servers before the old secret expires.'));
    slot.scrollIntoView({ block: 'nearest' });
    toast('Secret rotated', 'success');
  });
  return dataTable([
    { label: 'Tenant ID', cell: (t) => mono(t.tenant_id) },
    { label: 'Name', cell: (t) => t.name || '—' },
    { label: 'Created', cell: (t) => timeEl(t.created_at) },
    { label: 'Unscoped tokens', cell: (t) => badge(t.unscoped_tokens === 'deny' ? 'refused' : 'accepted', t.unscoped_tokens === 'deny' ? 'warn' : 'info') },
    {
      label: 'Rate limits',
      cell: (t) => el('div', { class: 'muted rate-limits' }, RATE_FIELDS.map(([name, label]) =>
        el('div', { class: 'nowrap', text: `${label.split(' ')[0].toLowerCase()} ${rateText((t.rate_limits || {})[name])}` }))),
    },
    {
      label: '', class: 'row-actions',
      cell: (t) => el('div', { class: 'btn-row' },
        el('a', { class: 'btn ghost sm', href: `#/leaderboards/${enc(t.tenant_id)}`, text: 'Leaderboards' }),
        btn('Settings', () => edit(t), { write: true, sm: true, id: `tenant-settings-${t.tenant_id}` }),
        btn('Rotate secret', () => rotate(t), { write: true, sm: true })),
    },
  ], tenants, {
    id: 'tenants-table',
    rowAttrs: (t) => ({ 'data-tenant': t.tenant_id }),
    empty: 'No tenants yet.',
    emptyHint: canWrite() ? 'Create one to get its HMAC secret and start sending events.' : null,
  });
}
