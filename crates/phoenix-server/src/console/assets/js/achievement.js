/*
 * One achievement's page (SPEC §7.5, §7.7): its metric, its steps with their rewards and how many
 * players completed each, editing its name, description, status and visibility, adding a step above
 * the last (earlier completions stand), and the grants it made.
 */
import { ApiError, api } from './api.js';
import { cardForm, field, input, onSubmit, select, toggleForm } from './forms.js';
import { achievementActions, achievementPath, describeMetric, fmtThreshold, parseJsonField, visibilityBadge } from './achievements.js';
import { grantsSection, rewardChips } from './grants.js';
import { achievementsHref, go, render, setCrumbs } from './router.js';
import { btn, card, dataTable, el, fill, isObj, listOf, mono, statusBadge, timeEl, toast, writeOnly } from './ui.js';

export async function viewAchievement(view, tenant, id) {
  setCrumbs([['Achievements', '#/achievements'], [tenant, achievementsHref(tenant)], [id]]);
  const a = await api('GET', achievementPath(tenant, id));
  const steps = Array.isArray(a.steps) ? a.steps : [];
  const edit = writeOnly(() => editForm(a));
  const addStep = writeOnly(() => addStepForm(a, steps));
  fill(view,
    el('div', { class: 'page-head' },
      el('div', null,
        el('h1', null, a.name || a.achievement_id, ' ', statusBadge(a.status), ' ', visibilityBadge(a)),
        el('p', { class: 'muted meta-line' }, mono(`${a.tenant_id} / ${a.achievement_id}`),
          ` · version ${a.version ?? '—'} · created `, timeEl(a.created_at), ' · updated ', timeEl(a.updated_at)),
        a.description ? el('p', { class: 'description', text: a.description }) : null),
      el('div', { class: 'actions' },
        btn('Edit', () => toggleForm(edit), { write: true, id: 'achievement-edit' }),
        achievementActions(a, () => render(), () => go(achievementsHref(tenant))))),
    edit, metricCard(a.metric), addStep, stepsCard(a, steps, addStep),
    grantsSection(tenant, { sourceId: id, title: 'Grants of this achievement' }).node);
}

const jsonOrNone = (v) => (isObj(v) && Object.keys(v).length ? mono(JSON.stringify(v)) : el('span', { class: 'muted', text: 'none' }));

function metricCard(m) {
  const metric = isObj(m) ? m : {};
  const filters = isObj(metric.scope) ? metric.scope.filters : null;
  return card(el('h2', { text: 'Metric' }),
    el('dl', { class: 'facts', id: 'achievement-metric' },
      el('dt', { text: 'Progress is' }), el('dd', { text: describeMetric(metric) }),
      el('dt', { text: 'Event type' }), el('dd', null, mono(metric.event_type ?? '—')),
      el('dt', { text: 'Aggregation' }), el('dd', null, mono(metric.aggregation ?? 'count')),
      metric.aggregation === 'sum' ? [el('dt', { text: 'Points expression' }), el('dd', null, mono(metric.points_expression ?? '—'))] : null,
      metric.aggregation === 'streak' ? [el('dt', { text: 'Time zone' }), el('dd', null, mono(metric.timezone ?? 'UTC'))] : null,
      el('dt', { text: 'Conditions' }), el('dd', null, jsonOrNone(metric.conditions)),
      isObj(filters) && Object.keys(filters).length ? [el('dt', { text: 'Scope filters' }), el('dd', null, jsonOrNone(filters))] : null));
}

function stepsCard(a, steps, addStep) {
  const completions = listOf(a, 'completions');
  const players = (i) => (completions[i] ? completions[i].players ?? 0 : 0);
  return el('section', { class: 'card' },
    el('div', { class: 'card-head' }, el('h2', { text: 'Steps' }),
      btn('Add a step', () => toggleForm(addStep), { write: true, kind: 'primary', sm: true, id: 'step-new' })),
    el('p', { class: 'muted small list-summary', text: 'A player completes a step, once, at the event that takes their progress to its threshold, and gets its rewards.' }),
    dataTable([
      { label: 'Step', cell: (s) => String(steps.indexOf(s) + 1) },
      { label: 'Threshold', class: 'num', cell: (s) => fmtThreshold(s.threshold) },
      { label: 'Rewards', cell: (s) => (listOf(s, 'rewards').length ? rewardChips(s.rewards) : el('span', { class: 'muted', text: 'none' })) },
      { label: 'Players who completed it', class: 'num step-players', cell: (s) => String(players(steps.indexOf(s))) },
    ], steps, {
      id: 'steps-table',
      rowAttrs: (s) => ({ 'data-step': steps.indexOf(s), 'data-threshold': s.threshold, 'data-players': players(steps.indexOf(s)) }),
      empty: 'No steps.',
    }));
}

/** Name, description, status and visibility (the metric cannot change: progress was counted by it). */
function editForm(a) {
  const hidden = el('input', { type: 'checkbox', name: 'hidden', id: 'achievement-edit-hidden', checked: a.hidden });
  const form = cardForm({ id: 'achievement-edit-form', title: `Edit ${a.achievement_id}`, submitId: 'achievement-save-submit', submitLabel: 'Save changes' },
    el('div', { class: 'grid-3' },
      field('Name', input('name', { value: a.name || '' })),
      field('Description', input('description', { value: a.description || '' })),
      field('Status', select('status', [['active', 'active: events count'], ['inactive', 'inactive: events do not count']], a.status))),
    el('div', { class: 'field', 'data-for': 'hidden' },
      el('label', { class: 'check' }, hidden, el('span', null, 'Hidden', el('small', { class: 'muted', text: 'Players see it only once they complete a step.' })))),
    el('p', { class: 'muted small', text: 'The metric cannot change: progress so far was counted by it. Make a new achievement instead.' }));
  onSubmit(form, async () => {
    const value = (name) => form.elements[name].value.trim();
    const body = { name: value('name'), description: value('description'), status: form.elements.status.value, hidden: hidden.checked };
    const saved = await api('PATCH', achievementPath(a.tenant_id, a.achievement_id), body);
    toast(`"${saved.name || saved.achievement_id}" saved`, 'success');
    render();
  });
  return form;
}

/**
 * A new step above the last: the PATCH repeats the existing steps unchanged. The server names the new
 * step by its index (`steps[2].threshold`); the form's fields are that step's, so the index is dropped.
 */
function addStepForm(a, steps) {
  const last = steps.length ? steps[steps.length - 1].threshold : 0;
  const rewards = el('textarea', { name: 'rewards', id: 'step-rewards', class: 'json-editor rewards-editor', rows: 4, spellcheck: 'false', text: '[]' });
  const form = cardForm({ id: 'step-form', title: 'Add a step', submitId: 'step-add-submit', submitLabel: 'Add step' },
    el('div', { class: 'grid-3' },
      field('Threshold', input('threshold', { inputmode: 'decimal', placeholder: `more than ${fmtThreshold(last)}` }),
        `Above the last step (${fmtThreshold(last)}). Players already past it complete it at their next matching event.`),
      el('div'), el('div')),
    field('Rewards (JSON)', rewards, '0 to 10 rewards: currency {currency, amount}, item {item, quantity}, badge {badge}, coupon {campaign_id} or custom {data}.'));
  const index = steps.length;
  onSubmit(form, async () => {
    const raw = form.elements.threshold.value.trim();
    const threshold = raw !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    const step = { threshold, rewards: parseJsonField(rewards, 'rewards') };
    try {
      await api('PATCH', achievementPath(a.tenant_id, a.achievement_id), { steps: [...steps, step] });
    } catch (err) {
      const own = `steps[${index}].`;
      if (err instanceof ApiError && err.message.startsWith(own)) throw new ApiError(err.status, err.code, err.message.slice(own.length));
      throw err;
    }
    toast(`Step ${index + 1} (${fmtThreshold(threshold)}) added`, 'success');
    render();
  });
  return form;
}
