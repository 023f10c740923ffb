/*
 * The API keys page: list, create (the key shown once) and revoke.
 */
import { api } from './api.js';
import { cardForm, field, input, onSubmit, toggleForm } from './forms.js';
import { setCrumbs } from './router.js';
import { canWrite, state } from './state.js';
import { loadTenants } from './tenants.js';
import { act, badge, btn, countCard, dataTable, el, enc, fill, listOf, mono, pageHead, plural, secretBox, timeEl, toast, writeOnly } from './ui.js';

export async function viewKeys(view) {
  setCrumbs([['API keys']]);
  const slot = el('div', { class: 'slot' });
  const list = el('div');
  const reload = async () => {
    const keys = listOf(await api('GET', '/api-keys'), 'keys');
    list.replaceChildren(countCard(plural(keys.length, 'key'), keyTable(keys, reload)));
  };
  const tenants = canWrite() ? await loadTenants().catch(() => []) : [];
  const form = writeOnly(() => keyForm(tenants, async (created) => {
    slot.replaceChildren(secretBox(`API key "${created.name || created.key_id}"`, created.key,
      `Key ID ${created.key_id}. Send it as X-API-Key or Authorization: Bearer.`));
    toast('API key created', 'success');
    await reload();
  }));
  await reload();
  fill(view,
    pageHead('API keys', 'Keys let your backend services call the Admin API with limited scopes and tenants.',
      btn('New API key', () => toggleForm(form), { write: true, kind: 'primary', id: 'key-new' })),
    slot, form, list);
}

function keyStatus(k) {
  if (k.revoked_at) return badge('revoked', 'danger');
  if (k.expires_at && new Date(k.expires_at) < new Date()) return badge('expired', 'muted');
  return badge('active', 'ok');
}

function keyTable(keys, reload) {
  const revoke = (k) => act(
    { title: `Revoke "${k.name || k.key_id}"?`, body: 'Requests using this key are refused immediately. This cannot be undone.', action: 'Revoke key', danger: true },
    () => api('DELETE', `/api-keys/${enc(k.key_id)}`),
    async () => { toast('Key revoked', 'success'); await reload(); });
  return dataTable([
    { label: 'Name', cell: (k) => el('div', null, el('strong', { text: k.name || '—' }), el('div', { class: 'muted small' }, mono(k.key_id))) },
    { label: 'Scopes', cell: (k) => el('div', { class: 'chips' }, (k.scopes || []).map((s) => badge(s, s === 'admin' ? 'warn' : 'chip'))) },
    { label: 'Tenants', cell: (k) => ((k.tenant_ids || []).includes('*') ? badge('all tenants', 'info') : (k.tenant_ids || []).join(', ') || '—') },
    { label: 'Created', cell: (k) => timeEl(k.created_at) },
    { label: 'Expires', cell: (k) => (k.expires_at ? timeEl(k.expires_at) : el('span', { class: 'muted', text: 'never' })) },
    { label: 'Status', cell: keyStatus },
    { label: '', class: 'row-actions', cell: (k) => (k.revoked_at ? null : btn('Revoke', () => revoke(k), { write: true, sm: true, kind: 'danger-ghost' })) },
  ], keys, { id: 'keys-table', rowAttrs: (k) => ({ 'data-key': k.key_id }), empty: 'No API keys yet.' });
}

function keyForm(tenants, onCreated) {
  const check = (name, value, label, attrs = {}) => el('label', { class: 'check' }, el('input', { type: 'checkbox', name, value, ...attrs }), label);
  const allTenants = check('tenant_ids', '*', el('span', { text: 'All tenants, including future ones' }), { checked: true });
  const tenantBoxes = tenants.map((t) => check('tenant_ids', t.tenant_id, mono(t.tenant_id), { disabled: true }));
  const syncTenants = () => tenantBoxes.forEach((b) => { b.firstChild.disabled = allTenants.firstChild.checked; });
  allTenants.firstChild.addEventListener('change', syncTenants);
  const form = cardForm({ id: 'key-form', title: 'New API key', submitId: 'key-create-submit', submitLabel: 'Create key' },
    el('div', { class: 'grid-2' },
      field('Name', input('name', { placeholder: 'matchmaker-prod' }), 'Who or what uses this key.'),
      field('Expires (optional)', input('expires_at', { type: 'datetime-local' }), 'Your local time. Leave empty for no expiry.')),
    el('div', { class: 'field checks', 'data-for': 'scopes' }, el('span', { class: 'label', text: 'Scopes' }),
      el('div', { class: 'check-grid' }, state.scopes.map(({ scope, label }) =>
        check('scopes', scope, el('span', null, mono(scope), el('small', { class: 'muted', text: label })))))),
    el('div', { class: 'field checks', 'data-for': 'tenant_ids' }, el('span', { class: 'label', text: 'Tenants' }),
      allTenants, el('div', { class: 'check-grid' }, tenantBoxes)));
  onSubmit(form, async () => {
    const checked = (name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((b) => b.value);
    const body = { name: form.elements.name.value.trim(), scopes: checked('scopes') };
    body.tenant_ids = allTenants.firstChild.checked ? ['*'] : checked('tenant_ids');
    const exp = form.elements.expires_at.value;
    if (exp) body.expires_at = new Date(exp).toISOString();
    const created = await api('POST', '/api-keys', body);
    form.reset();
    syncTenants();
    form.hidden = true;
    await onCreated(created);
  });
  return form;
}
