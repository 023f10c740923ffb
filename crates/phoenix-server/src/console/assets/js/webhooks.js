/*
 * The webhooks page of a tenant (SPEC §7.6): the URLs Phoenix tells about what players earned (list,
 * create with the signing secret shown once). A webhook's own page, with its deliveries, enabling,
 * disabling and secret rotation, is webhook.js.
 */
import { api } from './api.js';
import { cardForm, field, input, onSubmit, toggleForm } from './forms.js';
import { setCrumbs, webhookHref, webhooksHref } from './router.js';
import { canWrite } from './state.js';
import { tenantPicker, withTenant } from './tenants.js';
import { badge, btn, countCard, dataTable, el, enc, fill, listOf, mono, pageHead, plural, secretBox, timeEl, toast, writeOnly } from './ui.js';

export const webhookPath = (t, id) => `/tenants/${enc(t)}/webhooks/${enc(id)}`;

/** The event types a webhook may take, and what each reports. */
const EVENT_TYPES = [
  ['reward.granted', 'a player earned a reward (any source)'],
  ['achievement.completed', 'a player completed a step of an achievement'],
  ['coupon.redeemed', 'a player redeemed a code'],
  ['grant.voided', 'a grant was voided'],
  ['window.closed', 'a window of a leaderboard ended'],
];

export const webhookStatus = (w) => badge(w.status, w.status === 'active' ? 'ok' : 'danger');
export const eventChips = (events) => el('div', { class: 'chips' }, (Array.isArray(events) ? events : []).map((e) => badge(e, 'chip')));

/** The signing secret, shown this once: the server never answers it again. */
export const webhookSecretBox = (title, secret) => secretBox(title, secret,
  'Your receiver checks the webhook-signature header with it (Standard Webhooks: HMAC-SHA256 over "id.timestamp.body").');

export async function viewWebhooks(view, tenant) {
  if (tenant) view.dataset.tenant = tenant;
  setCrumbs(tenant ? [['Webhooks', '#/webhooks'], [tenant]] : [['Webhooks']]);
  const subtitle = 'URLs of your backend that Phoenix calls, signed, when players earn or redeem something.';
  const tenants = await withTenant(view, tenant, { title: 'Webhooks', subtitle, hrefFor: webhooksHref, pickerId: 'webhooks-tenant' });
  if (!tenants) return;
  const slot = el('div', { class: 'slot' });
  const list = el('div');
  async function reload() {
    const hooks = listOf(await api('GET', `/tenants/${enc(tenant)}/webhooks`), 'webhooks');
    hooks.sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
    list.replaceChildren(countCard(plural(hooks.length, 'webhook'), webhookTable(tenant, hooks)));
  }
  const form = writeOnly(() => webhookForm({ id: 'webhook-form', title: 'New webhook', submitId: 'webhook-create-submit', submitLabel: 'Create webhook' },
    null, async (body) => {
      const created = await api('POST', `/tenants/${enc(tenant)}/webhooks`, body);
      slot.replaceChildren(webhookSecretBox(`Signing secret of webhook ${created.webhook_id}`, created.secret));
      toast(`Webhook ${created.webhook_id} created`, 'success');
      await reload();
    }));
  await reload();
  fill(view,
    pageHead('Webhooks', subtitle, btn('New webhook', () => toggleForm(form), { write: true, kind: 'primary', id: 'webhook-new' })),
    el('div', { class: 'filter-bar' }, tenantPicker(tenants, tenant, webhooksHref, 'webhooks-tenant')),
    slot, form, list);
}

function webhookTable(tenant, hooks) {
  return dataTable([
    {
      label: 'Webhook',
      cell: (w) => el('div', null,
        el('a', { class: 'webhook-open strong', href: webhookHref(tenant, w.webhook_id), text: w.description || w.webhook_id }),
        el('div', { class: 'muted small' }, mono(w.webhook_id))),
    },
    { label: 'URL', cell: (w) => el('code', { class: 'mono url', text: w.url }) },
    { label: 'Events', cell: (w) => eventChips(w.events) },
    {
      label: 'Status',
      cell: (w) => el('div', null, webhookStatus(w), w.disabled_reason ? el('div', { class: 'muted small', text: w.disabled_reason }) : null),
    },
    { label: 'Created', cell: (w) => timeEl(w.created_at) },
  ], hooks, {
    id: 'webhooks-table',
    rowAttrs: (w) => ({ 'data-webhook': w.webhook_id, 'data-url': w.url, 'data-status': w.status }),
    empty: 'No webhooks yet.',
    emptyHint: canWrite() ? 'Create one with "New webhook" above: its signing secret is shown once.' : null,
  });
}

/**
 * The fields of a webhook (URL, events, description), for creating one (`webhook` null) or editing
 * it; `submit(body)` sends them. The form closes itself once `submit` succeeds.
 */
export function webhookForm(opts, webhook, submit) {
  const chosen = new Set(webhook ? webhook.events : []);
  const check = (value, label) => el('label', { class: 'check' },
    el('input', { type: 'checkbox', name: 'events', value, checked: chosen.has(value) }),
    el('span', null, mono(value), el('small', { class: 'muted', text: label })));
  const form = cardForm(opts,
    el('div', { class: 'grid-2' },
      field('URL', input('url', { placeholder: 'https://backend.example.com/phoenix', value: webhook ? webhook.url : '' }),
        'http(s). Phoenix POSTs each event here; a 2xx answer within 10 s counts as delivered, anything else is retried.'),
      field('Description (optional)', input('description', { placeholder: 'Rewards service (production)', value: webhook ? webhook.description : '' }))),
    el('div', { class: 'field checks', 'data-for': 'events' }, el('span', { class: 'label', text: 'Events' }),
      el('div', { class: 'check-grid' }, EVENT_TYPES.map(([value, label]) => check(value, label)))));
  onSubmit(form, async () => {
    const checked = [...form.querySelectorAll('input[name="events"]:checked')].map((b) => b.value);
    const body = { url: form.elements.url.value.trim(), events: checked, description: form.elements.description.value.trim() };
    await submit(body);
    if (!webhook) form.reset();
    form.hidden = true;
  }, 'url');
  return form;
}
