/*
 * The achievements page of a tenant (SPEC §7.5): its achievements with their steps and how many
 * players completed each (list, create, activate, deactivate, delete). An achievement's own page,
 * where it is edited and gets new steps, is achievement.js.
 */
import { ApiError, api } from './api.js';
import { cardForm, field, input, onSubmit, select, toggleForm } from './forms.js';
import { achievementHref, achievementsHref, setCrumbs } from './router.js';
import { canWrite } from './state.js';
import { tenantPicker, withTenant } from './tenants.js';
import { act, badge, btn, countCard, dataTable, el, enc, fill, isObj, listOf, mono, pageHead, plural, statusBadge, timeEl, toast, writeOnly } from './ui.js';

export const achievementPath = (t, id) => `/tenants/${enc(t)}/achievements/${enc(id)}`;

/** What a new achievement's steps start as, to edit. */
const STEPS_EXAMPLE = [
  { threshold: 10, rewards: [] },
  { threshold: 100, rewards: [{ type: 'badge', badge: 'veteran' }] },
];

const AGGREGATIONS = [
  ['count', 'count: one per matching event'],
  ['sum', 'sum: add up an expression'],
  ['streak', 'streak: consecutive days played'],
];

/** The metric in a few words: what is counted, and of which events. */
export function describeMetric(m) {
  if (!isObj(m)) return '—';
  const of = m.event_type || '?';
  const conditions = isObj(m.conditions) && Object.keys(m.conditions).length ? ' (with conditions)' : '';
  switch (m.aggregation) {
    case 'sum': return `sum of ${m.points_expression} over ${of}${conditions}`;
    case 'streak': return `days in a row with ${of}${conditions} (${m.timezone || 'UTC'})`;
    default: return `count of ${of}${conditions}`;
  }
}

/** A threshold as people read it (the server keeps thresholds as numbers: 10, not 10.0). */
export const fmtThreshold = (t) => (typeof t === 'number' ? t.toLocaleString(undefined, { maximumFractionDigits: 6 }) : String(t ?? '—'));

/** Per step: its threshold and how many players completed it. */
export function stepCounts(a) {
  const completions = listOf(a, 'completions');
  return el('ul', { class: 'step-counts' }, completions.map((c, i) => el('li', { 'data-step': i, 'data-threshold': c.threshold },
    el('span', { class: 'step-threshold', text: `≥ ${fmtThreshold(c.threshold)}` }),
    el('span', { class: 'step-players', 'data-players': c.players, text: plural(c.players ?? 0, 'player') }))));
}

export const visibilityBadge = (a) => (a.hidden ? badge('hidden', 'muted') : badge('shown', 'info'));

export async function viewAchievements(view, tenant) {
  if (tenant) view.dataset.tenant = tenant;
  setCrumbs(tenant ? [['Achievements', '#/achievements'], [tenant]] : [['Achievements']]);
  const subtitle = 'Goals players reach step by step from their events, each step with its rewards.';
  const tenants = await withTenant(view, tenant, { title: 'Achievements', subtitle, hrefFor: achievementsHref, pickerId: 'achievements-tenant' });
  if (!tenants) return;
  const list = el('div');
  async function reload() {
    const achievements = listOf(await api('GET', `/tenants/${enc(tenant)}/achievements`), 'achievements');
    achievements.sort((a, b) => a.achievement_id.localeCompare(b.achievement_id));
    list.replaceChildren(countCard(plural(achievements.length, 'achievement'), achievementTable(tenant, achievements, reload)));
  }
  const form = writeOnly(() => achievementForm(tenant, async (a) => {
    toast(`Achievement ${a.achievement_id} created`, 'success');
    await reload();
  }));
  await reload();
  fill(view,
    pageHead('Achievements', subtitle,
      btn('Refresh', () => reload(), { id: 'achievements-refresh' }),
      btn('New achievement', () => toggleForm(form), { write: true, kind: 'primary', id: 'achievement-new' })),
    el('div', { class: 'filter-bar' }, tenantPicker(tenants, tenant, achievementsHref, 'achievements-tenant')),
    form, list);
}

function achievementTable(tenant, achievements, reload) {
  return dataTable([
    {
      label: 'Achievement',
      cell: (a) => el('div', null,
        el('a', { class: 'achievement-open strong', href: achievementHref(tenant, a.achievement_id), text: a.name || a.achievement_id }),
        el('div', { class: 'muted small' }, mono(a.achievement_id))),
    },
    { label: 'Metric', cell: (a) => el('span', { class: 'small', text: describeMetric(a.metric) }) },
    { label: 'Completed by', cell: stepCounts },
    { label: 'Status', cell: (a) => statusBadge(a.status) },
    { label: 'To players', cell: visibilityBadge },
    { label: 'Ver.', class: 'num', cell: (a) => String(a.version ?? '—') },
    { label: 'Updated', cell: (a) => timeEl(a.updated_at) },
    { label: '', class: 'row-actions', cell: (a) => achievementActions(a, reload, reload) },
  ], achievements, {
    id: 'achievements-table',
    rowAttrs: (a) => ({ 'data-achievement': a.achievement_id, 'data-status': a.status }),
    empty: 'No achievements yet.',
    emptyHint: canWrite() ? 'Create one with "New achievement" above: events accepted from then on count toward it.' : null,
  });
}

/** Activate or deactivate, and delete, one achievement; nothing at all for VIEWERs. */
export function achievementActions(a, onChanged, onDeleted) {
  if (!canWrite()) return null;
  const path = achievementPath(a.tenant_id, a.achievement_id);
  const label = a.name || a.achievement_id;
  const setStatus = (status, ask) => act(ask, () => api('PATCH', path, { status }),
    async () => { toast(`"${label}" is now ${status}`, 'success'); await onChanged(); });
  const deactivate = {
    title: `Deactivate "${label}"?`, action: 'Deactivate',
    body: 'Events accepted while it is inactive do not count toward it. Steps already completed, and their grants, stay.',
  };
  const remove = () => act({
    title: `Delete "${label}"?`, action: 'Delete achievement', danger: true,
    body: 'Players no longer see it or progress on it. The grants it made stay, and its id cannot be used again.',
  }, () => api('DELETE', path), async () => { toast(`"${label}" deleted`, 'success'); await onDeleted(); });
  return el('div', { class: 'btn-row' },
    a.status === 'active'
      ? btn('Deactivate', () => setStatus('inactive', deactivate), { write: true, sm: true })
      : btn('Activate', () => setStatus('active'), { write: true, sm: true }),
    btn('Delete', remove, { write: true, sm: true, kind: 'danger-ghost' }));
}

/** A JSON textarea's value, or a 400 naming its field (so the error shows under it). */
export function parseJsonField(textarea, path) {
  try { return JSON.parse(textarea.value); } catch (e) { throw new ApiError(400, 'VALIDATION_ERROR', `${path}: is not valid JSON (${e.message})`); }
}

function achievementForm(tenant, onCreated) {
  const aggregation = select('metric.aggregation', AGGREGATIONS, 'count');
  const expression = field('Points expression', input('metric.points_expression', { placeholder: 'attrs.kills * 10' }),
    'What each matching event adds (the leaderboards\' expression language).');
  const zone = field('Time zone', input('metric.timezone', { placeholder: 'UTC' }), 'Where a day starts and ends. Empty: UTC.');
  const showFor = () => { expression.hidden = aggregation.value !== 'sum'; zone.hidden = aggregation.value !== 'streak'; };
  aggregation.addEventListener('change', showFor);
  const conditions = el('textarea', {
    name: 'metric.conditions', id: 'achievement-conditions', class: 'json-editor conditions-editor', rows: 3, spellcheck: 'false',
    placeholder: '{"attrs.victory": {"eq": true}}',
  });
  const steps = el('textarea', {
    name: 'steps', id: 'achievement-steps', class: 'json-editor rewards-editor', rows: 8, spellcheck: 'false',
    text: JSON.stringify(STEPS_EXAMPLE, null, 2),
  });
  const hidden = el('input', { type: 'checkbox', name: 'hidden', id: 'achievement-hidden' });
  const form = cardForm({ id: 'achievement-form', title: 'New achievement', submitId: 'achievement-create-submit', submitLabel: 'Create achievement' },
    el('div', { class: 'grid-3' },
      field('Achievement ID', input('achievement_id', { placeholder: 'slayer' }), 'Letters, digits, - and _. Cannot be changed or used again.'),
      field('Name', input('name', { placeholder: 'Slayer' })),
      field('Description (optional)', input('description', { placeholder: 'Win matches' }))),
    el('div', { class: 'grid-3' },
      field('Event type', input('metric.event_type', { placeholder: 'match.completed' }), 'The events that count, as in scoring rules (e.g. match.*).'),
      field('Aggregation', aggregation),
      el('div', null, expression, zone)),
    field('Conditions (JSON, optional)', conditions, 'Only events that match count, as in scoring rules: {"attrs.victory": {"eq": true}}.'),
    field('Steps (JSON)', steps, '1 to 20 steps with rising thresholds, each with 0 to 10 rewards: currency {currency, amount}, '
      + 'item {item, quantity}, badge {badge}, coupon {campaign_id} or custom {data}.'),
    el('div', { class: 'field', 'data-for': 'hidden' },
      el('label', { class: 'check' }, hidden, el('span', null, 'Hidden', el('small', { class: 'muted', text: 'Players see it only once they complete a step.' })))));
  showFor();
  onSubmit(form, async () => {
    const value = (name) => form.elements[name].value.trim();
    const metric = { event_type: value('metric.event_type'), aggregation: aggregation.value };
    if (aggregation.value === 'sum') metric.points_expression = value('metric.points_expression');
    if (aggregation.value === 'streak' && value('metric.timezone')) metric.timezone = value('metric.timezone');
    if (conditions.value.trim()) metric.conditions = parseJsonField(conditions, 'metric.conditions');
    const body = {
      achievement_id: value('achievement_id'), name: value('name'), description: value('description') || undefined,
      hidden: hidden.checked, metric, steps: parseJsonField(steps, 'steps'),
    };
    const created = await api('POST', `/tenants/${enc(tenant)}/achievements`, body);
    form.reset();
    showFor();
    form.hidden = true;
    await onCreated(created);
  }, 'achievement_id');
  return form;
}
