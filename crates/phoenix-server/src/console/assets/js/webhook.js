/*
 * One webhook's page (SPEC §7.6, §7.7): what it receives, editing it, disabling and enabling it (a
 * webhook the server disabled after a 410 says why), rotating its secret (the new one shown once),
 * deleting it, and its deliveries log: one row per attempt, newest first, a page at a time.
 */
import { api } from './api.js';
import { toggleForm } from './forms.js';
import { go, render, setCrumbs, webhooksHref } from './router.js';
import { act, badge, btn, card, dataTable, el, enc, fill, fmtClock, listOf, mono, pagedList, plural, timeEl, toast, writeOnly } from './ui.js';
import { eventChips, webhookForm, webhookPath, webhookSecretBox, webhookStatus } from './webhooks.js';

export async function viewWebhook(view, tenant, id) {
  setCrumbs([['Webhooks', '#/webhooks'], [tenant, webhooksHref(tenant)], [id]]);
  const w = await api('GET', webhookPath(tenant, id));
  const slot = el('div', { class: 'slot' });
  const edit = writeOnly(() => webhookForm({ id: 'webhook-edit-form', title: `Edit ${w.webhook_id}`, submitId: 'webhook-save-submit', submitLabel: 'Save changes' },
    w, async (body) => {
      await api('PATCH', webhookPath(tenant, id), body);
      toast('Webhook saved', 'success');
      render();
    }));
  fill(view,
    el('div', { class: 'page-head' },
      el('div', null,
        el('h1', null, w.description || w.webhook_id, ' ', webhookStatus(w)),
        el('p', { class: 'muted meta-line' }, mono(`${w.tenant_id} / ${w.webhook_id}`),
          ` · version ${w.version ?? '—'} · created `, timeEl(w.created_at), ' · updated ', timeEl(w.updated_at))),
      el('div', { class: 'actions' },
        btn('Edit', () => toggleForm(edit), { write: true, id: 'webhook-edit' }),
        statusAction(w), rotateAction(w, slot), deleteAction(w))),
    w.status === 'disabled' ? disabledNotice(w) : null,
    slot, edit,
    card(el('h2', { text: 'Sends' }),
      el('dl', { class: 'facts' },
        el('dt', { text: 'To' }), el('dd', null, el('code', { class: 'mono url', id: 'webhook-url', text: w.url })),
        el('dt', { text: 'Events' }), el('dd', null, eventChips(w.events)))),
    deliveriesSection(tenant, w));
}

/** Why nothing is being sent, and what enabling it does. */
function disabledNotice(w) {
  return el('div', { class: 'alert warn', id: 'webhook-disabled', role: 'status' },
    el('div', null,
      el('strong', { text: w.disabled_reason ? 'Phoenix disabled this webhook' : 'This webhook is disabled' }),
      w.disabled_reason ? el('p', { id: 'webhook-disabled-reason', text: w.disabled_reason }) : null,
      el('p', { class: 'small', text: 'Messages wait (at most 3 days, then they fail). Enabling it sends the waiting ones.' })));
}

function statusAction(w) {
  const path = webhookPath(w.tenant_id, w.webhook_id);
  const setStatus = (status, ask) => act(ask, () => api('PATCH', path, { status }),
    async () => { toast(`Webhook ${w.webhook_id} is now ${status}`, 'success'); render(); });
  return w.status === 'active'
    ? btn('Disable', () => setStatus('disabled', {
      title: `Disable webhook ${w.webhook_id}?`, action: 'Disable',
      body: 'Nothing is sent while it is disabled. Messages wait for at most 3 days, then they are marked failed.',
    }), { write: true, id: 'webhook-disable' })
    : btn('Enable', () => setStatus('active'), { write: true, kind: 'primary', id: 'webhook-enable' });
}

function rotateAction(w, slot) {
  return btn('Rotate secret', () => act({
    title: `Rotate the secret of ${w.webhook_id}?`, action: 'Rotate secret',
    body: 'A new signing secret is made. For 24 hours every delivery carries both signatures (the new one first), so your receiver can switch over.',
  }, () => api('POST', `${webhookPath(w.tenant_id, w.webhook_id)}/secret:rotate`, {}), (res) => {
    slot.replaceChildren(webhookSecretBox(`New signing secret of webhook ${w.webhook_id}`, res.secret));
    slot.scrollIntoView({ block: 'nearest' });
    toast('Secret rotated', 'success');
  }), { write: true, id: 'webhook-rotate' });
}

function deleteAction(w) {
  return btn('Delete', () => act({
    title: `Delete webhook ${w.webhook_id}?`, action: 'Delete webhook', danger: true,
    body: 'Nothing more is sent to it, and messages still waiting are dropped.',
  }, () => api('DELETE', webhookPath(w.tenant_id, w.webhook_id)), () => {
    toast(`Webhook ${w.webhook_id} deleted`, 'success');
    go(webhooksHref(w.tenant_id));
  }), { write: true, kind: 'danger-ghost', id: 'webhook-delete' });
}

const STATE_BADGES = { pending: 'info', delivered: 'ok', failed: 'danger' };

function resultCell(d) {
  if (d.status_code != null) return badge(`HTTP ${d.status_code}`, d.status_code >= 200 && d.status_code < 300 ? 'ok' : 'danger');
  if (d.error) return el('span', { class: 'delivery-error small', text: d.error });
  return el('span', { class: 'muted', text: '—' });
}

/**
 * The deliveries log, newest first; Refresh shows new attempts (the first page again). `state` is the
 * message's, so every attempt of a message delivered on a retry says delivered.
 */
function deliveriesSection(tenant, w) {
  const id = w.webhook_id;
  // A disabled webhook's messages wait for it whatever their next attempt says.
  const nextAttempt = (d) => (d.state === 'pending' && w.status === 'disabled'
    ? el('span', { class: 'muted', text: 'when enabled' }) : timeEl(d.next_attempt_at, fmtClock));
  const results = el('div', { class: 'paged', id: 'deliveries-results' });
  const list = pagedList(results, {
    id: 'deliveries',
    fetchPage(cursor, limit) {
      return api('GET', `${webhookPath(tenant, id)}/deliveries?limit=${limit}${cursor ? `&cursor=${enc(cursor)}` : ''}`);
    },
    draw: (data) => [
      el('p', { class: 'muted small list-summary', id: 'deliveries-total', text: `${plural(data.total ?? 0, 'row')}, newest first: one per attempt, and one per message not tried yet` }),
      dataTable([
        { label: 'Message', cell: (d) => el('div', null, mono(d.delivery_id), el('div', { class: 'muted small', text: d.event_type })) },
        { label: 'Attempt', class: 'num', cell: (d) => (d.attempt ? `#${d.attempt}` : el('span', { class: 'muted', text: 'not yet' })) },
        { label: 'Time', cell: (d) => timeEl(d.attempted_at, fmtClock) },
        { label: 'Result', cell: resultCell },
        { label: 'Duration', class: 'num', cell: (d) => (d.duration_ms != null ? `${d.duration_ms} ms` : '—') },
        { label: 'Message state', cell: (d) => badge(d.state, STATE_BADGES[d.state]) },
        { label: 'Next attempt', cell: nextAttempt },
      ], listOf(data, 'deliveries'), {
        id: 'deliveries-table',
        rowAttrs: (d) => ({ 'data-delivery': d.delivery_id, 'data-attempt': d.attempt, 'data-state': d.state, 'data-event': d.event_type, 'data-status-code': d.status_code ?? '' }),
        empty: 'Nothing sent yet.',
        emptyHint: 'A row appears for each attempt once one of its events happens.',
      }),
    ],
  });
  list.reload();
  return el('section', { class: 'card' },
    el('div', { class: 'card-head' }, el('h2', { text: 'Deliveries' }),
      btn('Refresh', () => list.reload(), { sm: true, id: 'deliveries-refresh' })),
    results);
}
