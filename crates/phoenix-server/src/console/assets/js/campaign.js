/*
 * One coupon campaign's page (SPEC §7.4): its rewards and limits, activate or deactivate, personal
 * codes (generate, shown in a copyable list; the paged list with a void action per code) and its
 * redemptions, the audit trail.
 */
import { api } from './api.js';
import { cardForm, field, input, onSubmit, toggleForm, wholeNumber } from './forms.js';
import { rewardChips } from './grants.js';
import { campaignPath, codeState, redemptionTable, validity, voidCode } from './coupons.js';
import { campaignsHref, render, setCrumbs } from './router.js';
import { act, btn, card, dataTable, el, enc, fill, listOf, mono, pagedList, plural, statusBadge, timeEl, toast, writeOnly } from './ui.js';

export async function viewCampaign(view, tenant, id) {
  setCrumbs([['Coupons', '#/coupons'], [tenant, campaignsHref(tenant)], [id]]);
  const c = await api('GET', campaignPath(tenant, id));
  const slot = el('div', { class: 'slot' });
  const codes = codesSection(tenant, id, slot);
  fill(view,
    el('div', { class: 'page-head' },
      el('div', null,
        el('h1', null, c.name || c.campaign_id, ' ', statusBadge(c.status)),
        el('p', { class: 'muted meta-line' }, mono(`${c.tenant_id} / ${c.campaign_id}`),
          ` · version ${c.version ?? '—'} · ${plural(c.redemptions ?? 0, 'redemption')}`,
          c.max_redemptions ? ` of at most ${c.max_redemptions}` : '',
          ` · ${plural(c.per_player_limit ?? 1, 'time')} per player`)),
      el('div', { class: 'actions' }, statusAction(c))),
    card(el('h2', { text: 'Rewards and validity' }),
      el('dl', { class: 'facts' },
        el('dt', { text: 'Each redemption grants' }), el('dd', null, rewardChips(c.rewards)),
        el('dt', { text: 'Shared code' }), el('dd', null, c.code ? mono(c.code) : el('span', { class: 'muted', text: 'none: personal codes only' })),
        el('dt', { text: 'Valid' }), el('dd', null, validity(c)))),
    slot, codes.form, codes.node, redemptionsSection(tenant, id));
}

function statusAction(c) {
  const path = campaignPath(c.tenant_id, c.campaign_id);
  const label = c.name || c.campaign_id;
  const setStatus = (status, ask) => act(ask, () => api('PATCH', path, { status }),
    async () => { toast(`"${label}" is now ${status}`, 'success'); render(); });
  return c.status === 'active'
    ? btn('Deactivate', () => setStatus('inactive', {
      title: `Deactivate "${label}"?`, action: 'Deactivate',
      body: 'None of its codes can be redeemed until it is activated again.',
    }), { write: true })
    : btn('Activate', () => setStatus('active'), { write: true });
}

/** The codes just made, shown once in a list to copy; they also stay in the codes list below. */
function newCodesBox(issued) {
  const codes = listOf(issued, 'codes');
  const text = codes.map((c) => c.code).join('\n');
  const copy = el('button', { type: 'button', class: 'btn secondary sm', text: 'Copy all' });
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(text); copy.textContent = 'Copied'; } catch { copy.textContent = 'Select and copy'; }
    setTimeout(() => { copy.textContent = 'Copy all'; }, 1500);
  });
  const box = el('section', { class: 'secret-box', id: 'new-codes', role: 'status' },
    el('div', { class: 'secret-head' }, el('strong', { text: `${plural(codes.length, 'new code')}` }),
      el('div', { class: 'btn-row' }, copy, el('button', { type: 'button', class: 'btn ghost sm', text: 'Done', onclick: () => box.remove() }))),
    el('p', { class: 'muted small', text: codes[0] && codes[0].issued_to
      ? `Bound to ${codes[0].issued_to}: only that player can redeem them.`
      : 'Each works once, for whoever redeems it first.' }),
    el('ul', { class: 'code-list', id: 'new-codes-list' }, codes.map((c) => el('li', { 'data-code': c.code }, mono(c.code)))));
  return box;
}

function generateForm(tenant, id, onIssued) {
  const form = cardForm({ id: 'codes-form', title: 'Generate personal codes', submitId: 'codes-generate-submit', submitLabel: 'Generate codes' },
    el('div', { class: 'grid-3' },
      field('How many', input('count', { inputmode: 'numeric', value: '10' }), '1 to 10000 single-use codes.'),
      field('For player (optional)', input('user_id', { placeholder: 'user_id' }), 'Binds every code to this player. Empty: whoever redeems first.'),
      el('div')));
  onSubmit(form, async () => {
    const user = form.elements.user_id.value.trim();
    const body = { count: wholeNumber(form.elements.count.value), user_id: user || undefined };
    const issued = await api('POST', `${campaignPath(tenant, id)}/codes`, body);
    form.reset();
    form.hidden = true;
    await onIssued(issued);
  });
  return form;
}

/** The campaign's personal codes in issue order, a page at a time, each with its void action. */
function codesSection(tenant, id, slot) {
  const results = el('div', { class: 'paged', id: 'codes-results' });
  const list = pagedList(results, {
    id: 'codes',
    fetchPage(cursor, limit) {
      return api('GET', `${campaignPath(tenant, id)}/codes?limit=${limit}${cursor ? `&cursor=${enc(cursor)}` : ''}`);
    },
    draw: (data) => [
      el('p', { class: 'muted small list-summary', id: 'codes-total', text: `${plural(data.total ?? 0, 'personal code')}, oldest first` }),
      dataTable([
        { label: 'Code', cell: (c) => mono(c.code) },
        { label: 'Issued to', cell: (c) => c.issued_to || el('span', { class: 'muted', text: 'whoever redeems first' }) },
        { label: 'Redeemed by', cell: (c) => c.redeemed_by || '—' },
        { label: 'Redeemed', cell: (c) => timeEl(c.redeemed_at) },
        { label: 'State', cell: (c) => el('div', null, codeState(c), c.void_reason ? el('div', { class: 'muted small', text: c.void_reason }) : null) },
        { label: '', class: 'row-actions', cell: (c) => (c.voided_at ? null : btn('Void', () => voidCode(tenant, c.code, () => list.refresh()), { write: true, sm: true, kind: 'danger-ghost' })) },
      ], listOf(data, 'codes'), {
        id: 'codes-table',
        rowAttrs: (c) => ({ 'data-code': c.code, 'data-state': c.voided_at ? 'voided' : c.redeemed_at ? 'redeemed' : 'available' }),
        empty: 'No personal codes yet.',
        emptyHint: 'Generate them here, or let a reward rule hand them out with a coupon reward.',
      }),
    ],
  });
  const form = writeOnly(() => generateForm(tenant, id, async (issued) => {
    slot.replaceChildren(newCodesBox(issued));
    toast(`${plural(listOf(issued, 'codes').length, 'code')} generated`, 'success');
    await list.reload();
  }));
  list.reload();
  const node = el('section', { class: 'card' },
    el('div', { class: 'card-head' }, el('h2', { text: 'Personal codes' }),
      btn('Generate codes', () => toggleForm(form), { write: true, kind: 'primary', sm: true, id: 'codes-new' })),
    results);
  return { node, form };
}

/** Who redeemed the campaign's codes, newest first. */
function redemptionsSection(tenant, id) {
  const results = el('div', { class: 'paged', id: 'redemptions-results' });
  pagedList(results, {
    id: 'redemptions',
    fetchPage(cursor, limit) {
      const q = new URLSearchParams({ campaign_id: id, limit: String(limit) });
      if (cursor) q.set('cursor', cursor);
      return api('GET', `/tenants/${enc(tenant)}/coupon-redemptions?${q}`);
    },
    draw: (data) => [
      el('p', { class: 'muted small list-summary', text: `${plural(data.total ?? 0, 'redemption')}, newest first` }),
      redemptionTable(listOf(data, 'redemptions'), 'redemptions-table', 'Nobody has redeemed a code of this campaign yet.'),
    ],
  }).reload();
  return card(el('h2', { text: 'Redemptions' }), results);
}
