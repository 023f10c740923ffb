/*
 * The new-leaderboard form: a form tab and a JSON tab over the same request body, with the server's
 * validation errors shown by field in either.
 */
import { ApiError, api } from './api.js';
import { cardForm, clearErrors, field, input, matchField, messagePath, select, showFormError, showSummary } from './forms.js';
import { cap, clone, el, enc, isObj, listOf } from './ui.js';

const TIMEFRAMES = [['daily', 'Daily'], ['weekly', 'Weekly'], ['monthly', 'Monthly'], ['all_time', 'All time'], ['custom', 'Custom dates']];
const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
const AGGREGATIONS = [['sum', 'sum: add up points'], ['max', 'max: best single result'], ['min', 'min: lowest single result'],
  ['latest', 'latest: most recent value'], ['count', 'count: one per event']];
const METHODS = [['score_desc', 'Highest score first'], ['score_asc', 'Lowest score first']];

// Inputs are named by their path in the request body, so the form maps to JSON (and errors to inputs) by name.
const pathKeys = (path) => path.split(/[.[\]]+/).filter(Boolean);
const getPath = (obj, path) => pathKeys(path).reduce((o, k) => (o != null && typeof o === 'object' ? o[k] : undefined), obj);

function setPath(obj, path, value) {
  const keys = pathKeys(path);
  let o = obj;
  keys.slice(0, -1).forEach((k, i) => {
    if (o[k] == null || typeof o[k] !== 'object') o[k] = /^\d+$/.test(keys[i + 1]) ? [] : {};
    o = o[k];
  });
  if (value === undefined) delete o[keys[keys.length - 1]];
  else o[keys[keys.length - 1]] = value;
}

const LB_DEFAULTS = {
  'config.timeframe.type': 'daily', 'config.timeframe.timezone': 'UTC', 'config.timeframe.reset_time': '00:00',
  'config.timeframe.reset_day': 'monday', 'config.timeframe.reset_day_of_month': 1,
  'config.scoring.aggregation': 'sum', 'config.ranking.method': 'score_desc', 'config.ranking.size': 1000,
};
const LB_NUMERIC = new Set(['config.timeframe.reset_day_of_month', 'config.ranking.size', 'config.ranking.min_score']);
const LB_VISIBLE = { // timeframe fields shown per type
  'config.timeframe.timezone': ['daily', 'weekly', 'monthly'], 'config.timeframe.reset_time': ['daily', 'weekly', 'monthly'],
  'config.timeframe.reset_day': ['weekly'], 'config.timeframe.reset_day_of_month': ['monthly'],
  'config.timeframe.starts_at': ['custom'], 'config.timeframe.ends_at': ['custom'],
};

function timezoneList() {
  let zones = ['UTC', 'Europe/London', 'America/New_York', 'Asia/Tokyo'];
  try { zones = ['UTC', ...Intl.supportedValuesOf('timeZone').filter((z) => z !== 'UTC')]; } catch { /* older browser */ }
  return el('datalist', { id: 'tz-list' }, zones.map((z) => el('option', { value: z })));
}

export function leaderboardForm(tenants, defaultTenant, onCreated) {
  let base = {};       // the last JSON body: keeps what only the JSON tab can express
  let mode = 'form';
  const f = {};        // body path -> control
  const wrap = {};     // body path -> .field wrapper
  const fld = (label, control, hint) => {
    f[control.name] = control;
    control.id = `lb-f-${control.name.replace(/[^A-Za-z0-9_-]+/g, '-')}`;
    return (wrap[control.name] = field(label, control, hint));
  };
  const tenantCtl = tenants.length
    ? select('tenant_id', [['', 'Choose a tenant…'], ...tenants.map((t) => [t.tenant_id, `${t.tenant_id}${t.name ? ` (${t.name})` : ''}`])])
    : input('tenant_id', { placeholder: 'tenant-prod-001' });
  const fieldset = (legend, cls, ...fields) => el('fieldset', null, el('legend', { text: legend }), el('div', { class: cls }, fields));
  const formPane = el('div', { class: 'tab-pane' },
    fieldset('Basics', 'grid-2',
      fld('Tenant', tenantCtl),
      fld('Leaderboard ID', input('leaderboard_id', { placeholder: 'xp-weekly-global' }), 'Letters, digits, - and _. Used by game clients; cannot be changed.'),
      fld('Name', input('name', { placeholder: 'Global Weekly XP' })),
      fld('Description', input('description', { placeholder: 'Optional' }))),
    fieldset('Time window', 'grid-3',
      fld('Timeframe', select('config.timeframe.type', TIMEFRAMES)),
      fld('Time zone', input('config.timeframe.timezone', { list: 'tz-list' }), 'IANA name, e.g. Europe/Paris.'),
      fld('Reset time', input('config.timeframe.reset_time', { placeholder: 'HH:MM' }), 'Wall-clock time in that zone.'),
      fld('Reset day', select('config.timeframe.reset_day', DAYS.map((d) => [d, cap(d)]))),
      fld('Reset day of month', input('config.timeframe.reset_day_of_month', { type: 'number' }), '1 to 28.'),
      fld('Starts at', input('config.timeframe.starts_at', { placeholder: '2025-01-01T00:00:00Z' }), 'RFC 3339.'),
      fld('Ends at', input('config.timeframe.ends_at', { placeholder: '2025-01-31T23:59:59Z' }), 'RFC 3339, after the start.')),
    fieldset('Scoring', 'grid-3',
      fld('Event type', input('config.scoring.rules[0].event_type', { placeholder: 'match.completed' }), 'Exact type, or a prefix ending in *.'),
      fld('Points expression', input('config.scoring.rules[0].points_expression', { placeholder: 'attrs.score' }), 'Numbers, attrs.* fields, + - * /, min(), max(), abs().'),
      fld('Aggregation', select('config.scoring.aggregation', AGGREGATIONS))),
    fieldset('Ranking', 'grid-3',
      fld('Order', select('config.ranking.method', METHODS)),
      fld('Ranked entries', input('config.ranking.size', { type: 'number' }), 'How many players are ranked and served (1 to 100000).'),
      fld('Minimum score', input('config.ranking.min_score', { type: 'number', step: 'any', placeholder: 'none' }), 'Optional. Worse scores are not ranked.')),
    timezoneList());
  const note = el('p', { class: 'notice', hidden: true, text: 'This definition has settings only the JSON tab can edit (scope filters, rule conditions or extra rules). They are kept when you submit from the form.' });
  const json = el('textarea', { class: 'json-editor', id: 'lb-json', 'aria-label': 'Leaderboard definition (JSON)', spellcheck: 'false', rows: 22 });
  json.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Tab' || ev.shiftKey) return;
    ev.preventDefault();
    json.setRangeText('  ', json.selectionStart, json.selectionEnd, 'end');
  });
  const jsonPane = el('div', { class: 'tab-pane', hidden: true },
    el('p', { class: 'muted small', text: 'The request body of POST /tenants/{tenant_id}/leaderboards. Use it for scope filters, rule conditions and several rules.' }),
    el('div', { class: 'field', 'data-for': 'json' }, json));
  const tab = (id, text) => el('button', { type: 'button', role: 'tab', class: 'tab', id, text });
  const tabs = { form: tab('lb-tab-form', 'Form'), json: tab('lb-tab-json', 'JSON') };
  const form = cardForm({
    id: 'lb-form', title: 'New leaderboard', submitId: 'lb-create-submit', submitLabel: 'Create leaderboard',
    extraHead: el('div', { class: 'tabs', role: 'tablist' }, tabs.form, tabs.json),
  }, note, formPane, jsonPane);

  const visible = (name) => !wrap[name].hidden;
  function syncVisibility() {
    const type = f['config.timeframe.type'].value;
    for (const [name, types] of Object.entries(LB_VISIBLE)) wrap[name].hidden = !types.includes(type);
  }
  f['config.timeframe.type'].addEventListener('change', syncVisibility);

  /** The body the form describes: every visible, non-empty input at its path, over what the JSON tab added. */
  function formToBody() {
    const body = clone(base);
    if (isObj(body.config)) { delete body.config.timeframe; delete body.config.ranking; }
    for (const [name, control] of Object.entries(f)) {
      const raw = String(control.value).trim();
      const numeric = LB_NUMERIC.has(name) && raw !== '' && Number.isFinite(Number(raw));
      setPath(body, name, !visible(name) || raw === '' ? undefined : numeric ? Number(raw) : raw);
    }
    return body;
  }

  function bodyToForm(body) {
    base = clone(body);
    for (const [name, control] of Object.entries(f)) {
      const v = getPath(body, name) ?? LB_DEFAULTS[name] ?? '';
      if (control.tagName === 'SELECT' && v !== '' && ![...control.options].some((o) => o.value === String(v))) {
        control.append(el('option', { value: String(v), text: String(v) }));
      }
      control.value = isObj(v) || Array.isArray(v) ? JSON.stringify(v) : String(v);
    }
    syncVisibility();
    const rules = listOf(getPath(body, 'config.scoring'), 'rules');
    const filters = getPath(body, 'config.scope.filters');
    const conditions = getPath(body, 'config.scoring.rules[0].conditions');
    note.hidden = !((isObj(filters) && Object.keys(filters).length) || rules.length > 1 || (isObj(conditions) && Object.keys(conditions).length));
  }

  function jsonError(message, path) {
    showSummary(form, 'The definition was not accepted.', message);
    json.classList.add('invalid');
    json.parentElement.append(el('div', { class: 'field-error', 'data-field': path || 'json', text: message }));
  }

  function parseJson() {
    let parsed;
    try { parsed = JSON.parse(json.value); } catch (e) { jsonError(`Invalid JSON: ${e.message}`); return null; }
    if (!isObj(parsed)) { jsonError('The definition must be a JSON object.'); return null; }
    return parsed;
  }

  function showPane(next) {
    mode = next;
    formPane.hidden = mode !== 'form';
    jsonPane.hidden = mode !== 'json';
    for (const [name, t] of Object.entries(tabs)) t.setAttribute('aria-selected', String(name === mode));
  }

  function switchTo(next) {
    if (next === mode) return;
    clearErrors(form);
    if (next === 'json') json.value = JSON.stringify(formToBody(), null, 2);
    else {
      const parsed = parseJson();
      if (!parsed) return;
      bodyToForm(parsed);
    }
    showPane(next);
  }
  tabs.form.addEventListener('click', () => switchTo('form'));
  tabs.json.addEventListener('click', () => switchTo('json'));

  function reset(tenant) {
    form.hidden = true;
    bodyToForm(tenant ? { tenant_id: tenant } : {});
    base = {};
    json.value = '';
    showPane('form');
  }

  function submitError(err) {
    if (err.status === 401) return;
    if (mode === 'form') { showFormError(form, err, 'leaderboard_id'); return; }
    jsonError(err.message, err.status === 409 ? 'leaderboard_id' : messagePath(err.message) || matchField(err.message, Object.keys(f)));
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const body = mode === 'json' ? parseJson() : formToBody();
    if (!body) return;
    const tenant = String(body.tenant_id || f.tenant_id.value || '').trim();
    if (!tenant) {
      const msg = 'tenant_id: choose the tenant this leaderboard belongs to';
      if (mode === 'json') jsonError(msg, 'tenant_id');
      else showFormError(form, new ApiError(400, 'VALIDATION_ERROR', msg));
      return;
    }
    const submit = form.querySelector('#lb-create-submit');
    submit.disabled = true;
    try {
      const rec = await api('POST', `/tenants/${enc(tenant)}/leaderboards`, body);
      reset(tenant);
      await onCreated(rec);
    } catch (err) {
      submitError(err);
    } finally {
      submit.disabled = false;
    }
  });

  reset(defaultTenant || (tenants.length === 1 ? tenants[0].tenant_id : ''));
  return form;
}
