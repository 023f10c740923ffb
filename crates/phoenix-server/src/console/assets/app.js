'use strict';
/*
 * Phoenix web console: a dependency-free single-page app served at /console.
 *
 * Rules this file keeps:
 * - Server data reaches the page only through textContent and attributes (the el() helper), never innerHTML.
 * - The session lives in HttpOnly cookies set by the server; nothing is kept in localStorage.
 * - Every write control carries `data-write` and is not rendered at all for VIEWERs (btn() and writeOnly()).
 */
(() => {
  // ------------------------------------------------------------------ constants
  const SCOPES = [
    ['leaderboards:read', 'Read leaderboards'], ['leaderboards:write', 'Create and change leaderboards'],
    ['rewards:read', 'Read rewards'], ['rewards:write', 'Manage rewards'],
    ['achievements:read', 'Read achievements'], ['achievements:write', 'Manage achievements'],
    ['tenants:read', 'Read tenants'], ['tenants:write', 'Create tenants, rotate secrets'],
    ['keys:write', 'Manage API keys'], ['admin', 'Everything'],
  ];
  const TIMEFRAMES = [['daily', 'Daily'], ['weekly', 'Weekly'], ['monthly', 'Monthly'], ['all_time', 'All time'], ['custom', 'Custom dates']];
  const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
  const AGGREGATIONS = [['sum', 'sum: add up points'], ['max', 'max: best single result'], ['min', 'min: lowest single result'],
    ['latest', 'latest: most recent value'], ['count', 'count: one per event']];
  const METHODS = [['score_desc', 'Highest score first'], ['score_asc', 'Lowest score first']];
  const STATUSES = ['active', 'inactive', 'archived'];
  const LIVE_TOP = 25;
  const PAGE_SIZE = 50;
  const CLOSE_REASONS = {
    1000: 'The connection was closed.', 1001: 'The server is shutting down or restarting.',
    1006: 'The connection was lost.', 1011: 'The server hit an error.',
    1013: 'The server closed the connection because updates could not be delivered fast enough.',
    4404: 'This leaderboard was deactivated, so live updates stopped.',
    4410: 'This leaderboard was deleted, so live updates stopped.',
  };

  const state = {
    booted: false, authEnabled: true,
    user: null,          // {username, role}
    next: null,          // route to return to after signing in
    loginNotice: null,   // message for the sign-in page (e.g. session expired)
    shell: null, cleanups: [],
  };
  const root = () => document.getElementById('app');

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    let value;
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k === 'value') value = v;
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    append(node, children);
    if (value !== undefined) node.value = value;
    return node;
  }

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const enc = encodeURIComponent;
  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const clone = (v) => JSON.parse(JSON.stringify(v ?? {}));
  const listOf = (data, key) => (data && Array.isArray(data[key]) ? data[key] : []);
  const canWrite = () => !!state.user && state.user.role === 'ADMIN';

  /** Builds a write control and marks it; returns null for VIEWERs so it is never rendered. */
  function writeOnly(build) {
    if (!canWrite()) return null;
    const node = build();
    node.setAttribute('data-write', '');
    return node;
  }

  function btn(label, onclick, opts = {}) {
    const make = () => el('button', {
      type: opts.type || 'button', id: opts.id, onclick,
      class: ['btn', opts.kind || 'secondary', opts.sm ? 'sm' : ''].join(' ').trim(),
    }, label);
    return opts.write ? writeOnly(make) : make();
  }

  const badge = (text, kind) => el('span', { class: `badge ${kind || ''}`.trim(), text });
  const mono = (text) => el('code', { class: 'mono', text });
  const statusBadge = (s) => badge(s, { active: 'ok', inactive: 'warn', archived: 'muted', open: 'ok', closed: 'muted', upcoming: 'info' }[s]);
  const cap = (s) => String(s).charAt(0).toUpperCase() + String(s).slice(1);
  const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

  function fmtTime(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return iso ? String(iso) : '—';
    const year = d.getFullYear() === new Date().getFullYear() ? undefined : 'numeric';
    return d.toLocaleString(undefined, { year, month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  }

  function fmtClock(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return fmtTime(iso);
    return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString(undefined, { hour12: false }) : fmtTime(iso);
  }

  const timeEl = (iso, fmt = fmtTime) => (iso ? el('time', { datetime: iso, title: iso, text: fmt(iso) }) : '—');
  const fmtScore = (n) => (typeof n === 'number' ? n.toLocaleString(undefined, { maximumFractionDigits: 3 }) : String(n ?? '—'));

  function describeTimeframe(tf) {
    if (!isObj(tf)) return '—';
    const at = `${tf.reset_time || '00:00'} ${tf.timezone || 'UTC'}`;
    switch (tf.type) {
      case 'daily': return `Daily, resets ${at}`;
      case 'weekly': return `Weekly, resets ${cap(tf.reset_day || '?')} ${at}`;
      case 'monthly': return `Monthly, resets day ${tf.reset_day_of_month || 1} ${at}`;
      case 'all_time': return 'All time';
      case 'custom': return `Custom, ${fmtTime(tf.starts_at)} → ${fmtTime(tf.ends_at)}`;
      default: return String(tf.type || '—');
    }
  }

  function describeScoring(sc) {
    if (!isObj(sc)) return '—';
    const types = listOf(sc, 'rules').map((r) => r && r.event_type).filter(Boolean).join(', ');
    return `${sc.aggregation || 'sum'} of ${types || 'no events'}`;
  }

  // ------------------------------------------------------------------ feedback
  function toast(message, kind = 'info') {
    const node = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status', text: message });
    document.getElementById('toasts').append(node);
    setTimeout(() => node.classList.add('leaving'), 3600);
    setTimeout(() => node.remove(), 4000);
  }

  const loadingBlock = (text = 'Loading…') => el('div', { class: 'loading' }, el('span', { class: 'spinner' }), text);
  const emptyBlock = (title, hint) => el('div', { class: 'empty' }, el('strong', { text: title }), hint ? el('p', { text: hint }) : null);
  const errorBlock = (message, retry) => el('div', { class: 'alert error', role: 'alert' },
    el('span', { text: message }), retry ? btn('Try again', retry, { sm: true }) : null);
  const reportError = (err) => { if (err && err.status !== 401) toast(err.message || String(err), 'error'); };

  /** A modal on <dialog>; resolves true when the action is confirmed. */
  function confirmAction({ title, body, action = 'Confirm', danger = false }) {
    return new Promise((resolve) => {
      const dlg = el('dialog', { class: 'modal', 'aria-labelledby': 'modal-title' });
      const ok = writeOnly(() => el('button', { type: 'button', class: `btn ${danger ? 'danger' : 'primary'}`, text: action, onclick: () => dlg.close('ok') }));
      const cancel = el('button', { type: 'button', class: 'btn secondary', text: 'Cancel', onclick: () => dlg.close('cancel') });
      append(dlg, [el('h2', { id: 'modal-title', text: title }), el('p', { text: body }), el('div', { class: 'modal-actions' }, cancel, ok)]);
      dlg.addEventListener('close', () => { dlg.remove(); resolve(dlg.returnValue === 'ok'); });
      document.body.append(dlg);
      dlg.showModal();
      (danger || !ok ? cancel : ok).focus();
    });
  }

  /** Asks first (when `ask` is given), runs a write, then reports: the pattern of every row action. */
  async function act(ask, run, done) {
    if (ask && !(await confirmAction(ask))) return;
    try { await done(await run()); } catch (err) { reportError(err); }
  }

  function secretBox(title, secret, note) {
    const copy = el('button', { type: 'button', class: 'btn secondary sm', text: 'Copy' });
    copy.addEventListener('click', async () => {
      try { await navigator.clipboard.writeText(secret); copy.textContent = 'Copied'; } catch { copy.textContent = 'Select and copy'; }
      setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
    });
    const box = el('section', { class: 'secret-box', role: 'status' },
      el('div', { class: 'secret-head' }, el('strong', { text: title }),
        el('button', { type: 'button', class: 'btn ghost sm', text: 'Done', onclick: () => box.remove() })),
      el('p', { class: 'secret-warning', text: 'Copy it now: it will not be shown again. Keep it in a secret manager.' }),
      el('div', { class: 'secret-value' }, el('code', { id: 'secret-value', text: secret }), copy),
      note ? el('p', { class: 'muted small', text: note }) : null);
    return box;
  }

  // ------------------------------------------------------------------ API client
  class ApiError extends Error {
    constructor(status, code, message) { super(message); Object.assign(this, { status, code }); }
  }

  function csrfToken() {
    for (const part of document.cookie.split(';')) {
      const [k, ...rest] = part.trim().split('=');
      if (k === 'phoenix-csrf-token') return decodeURIComponent(rest.join('='));
    }
    return null;
  }

  async function rawFetch(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = method !== 'GET' ? csrfToken() : null;
    if (token) headers['X-CSRF-Token'] = token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    try {
      return await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, 'NETWORK', 'Cannot reach the Phoenix server. Check that it is running and try again.');
    }
  }

  async function parseResponse(res) {
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (res.ok) return data;
    const e = (data && data.error) || {};
    const fallback = res.status === 403 ? 'You do not have permission to do that.' : `Request failed (HTTP ${res.status}).`;
    throw new ApiError(res.status, e.code || `HTTP_${res.status}`, e.message || fallback);
  }

  let refreshing = null;
  /**
   * Rotates the session once, shared by every caller that hit a 401 at the same time, and by every tab:
   * a refresh token works once, so two tabs refreshing with the same one would look like a stolen token
   * and end the session. Tabs take turns under a Web Lock; a tab that waited finds the CSRF cookie
   * changed (each refresh sets a new one) and uses the session the other tab already renewed.
   */
  function refreshSession() {
    refreshing = refreshing || (async () => {
      const before = csrfToken();
      const renew = async () => {
        if (csrfToken() !== before) return true;
        try { return (await rawFetch('POST', '/auth/refresh', {})).ok; } catch { return false; }
      };
      try {
        return navigator.locks ? await navigator.locks.request('phoenix-session-refresh', renew) : await renew();
      } catch { return false; }
    })().finally(() => { refreshing = null; });
    return refreshing;
  }

  async function api(method, path, body, opts = {}) {
    let res = await rawFetch(method, path, body);
    if (res.status === 401 && state.authEnabled) {
      if (await refreshSession()) res = await rawFetch(method, path, body);
      if (res.status === 401) {
        if (!opts.noRedirect) sessionExpired();
        throw new ApiError(401, 'UNAUTHORIZED', 'Your session has expired. Please sign in again.');
      }
    }
    return parseResponse(res);
  }

  function sessionExpired() {
    if (!state.user) return;
    if (location.hash && location.hash !== '#/login') state.next = location.hash;
    Object.assign(state, { user: null, shell: null, loginNotice: 'Your session has expired. Please sign in again.' });
    go('#/login');
  }

  // ------------------------------------------------------------------ forms
  function field(label, control, hint) {
    control.id = control.id || `f-${String(control.name || label).replace(/[^A-Za-z0-9_-]+/g, '-')}`;
    return el('div', { class: 'field', 'data-for': control.name || '' },
      el('label', { for: control.id, text: label }), control, hint ? el('small', { class: 'hint', text: hint }) : null);
  }

  const input = (name, attrs = {}) => el('input', { name, type: 'text', autocomplete: 'off', spellcheck: 'false', ...attrs });
  const select = (name, options, value) => el('select', { name, value }, options.map(([v, label]) => el('option', { value: v, text: label })));

  /** A card form with a summary box, the given body, and submit/cancel buttons; hidden until opened. */
  function cardForm({ id, title, submitId, submitLabel, extraHead }, ...body) {
    const form = el('form', { class: 'card form', id, hidden: true, novalidate: true },
      el('div', { class: 'form-title' }, el('h2', { text: title }), extraHead),
      el('div', { class: 'form-summary', role: 'alert', hidden: true }), body,
      el('div', { class: 'form-actions' },
        el('button', { type: 'submit', class: 'btn primary', id: submitId, text: submitLabel }),
        el('button', { type: 'button', class: 'btn ghost', text: 'Cancel', onclick: () => { form.hidden = true; clearErrors(form); } })));
    return form;
  }

  function clearErrors(form) {
    form.querySelectorAll('.field-error').forEach((n) => n.remove());
    form.querySelectorAll('.invalid').forEach((n) => { n.classList.remove('invalid'); n.removeAttribute('aria-invalid'); });
    const summary = form.querySelector('.form-summary');
    if (summary) { summary.hidden = true; summary.replaceChildren(); }
  }

  const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const hasWord = (msg, word) => new RegExp(`(^|[^A-Za-z0-9_.\\]])${escapeRe(word)}($|[^A-Za-z0-9_])`).test(msg);

  /** The path a validation message leads with (`config.ranking.size: must be ...`), if any. */
  function messagePath(message) {
    const m = /^([A-Za-z0-9_.[\]]+): /.exec(message || '');
    return m ? m[1] : null;
  }

  /** The known field a 400 message names: its leading path first, else the longest path or field name it mentions. */
  function matchField(message, paths) {
    const head = messagePath(message);
    let best = null;
    let bestScore = -1;
    for (const p of paths) {
      const short = p.split('.').pop().replace(/\[\d+\]$/, '');
      let score = -1;
      if (head && (head === p || head.startsWith(`${p}.`) || head.startsWith(`${p}[`))) score = 3000 + p.length;
      else if (hasWord(message, p)) score = 2000 + p.length;
      else if (short.length > 2 && hasWord(message, short)) score = 1000 + short.length;
      if (score > bestScore) { best = p; bestScore = score; }
    }
    return best;
  }

  const fieldNames = (form) => [...new Set([...form.querySelectorAll('[name]')].map((n) => n.name).filter(Boolean))];

  function addFieldError(form, path, message) {
    const control = form.querySelector(`[name="${CSS.escape(path)}"]`);
    if (!control) return;
    const host = control.closest('.field') || control.parentElement;
    control.classList.add('invalid');
    control.setAttribute('aria-invalid', 'true');
    const text = messagePath(message) === path ? message.slice(path.length + 2) : message; // the input already names the path
    host.append(el('div', { class: 'field-error', 'data-field': path, text: cap(text) }));
    if (host.closest('[hidden]')) return;
    control.focus({ preventScroll: true });
    host.scrollIntoView({ block: 'center' });
  }

  function showSummary(form, title, message) {
    const summary = form.querySelector('.form-summary');
    summary.replaceChildren(el('strong', { text: title }), el('p', { text: message }));
    summary.hidden = false;
  }

  function showFormError(form, err, conflictField) {
    const validation = err.status === 400;
    showSummary(form, validation ? 'Please fix the highlighted field.' : 'That did not work.', err.message);
    const path = err.status === 409 && conflictField ? conflictField : validation ? matchField(err.message, fieldNames(form)) : null;
    if (path) addFieldError(form, path, err.message);
  }

  /** Wires a form's submit to an async handler, with a busy button and errors shown in place. */
  function onSubmit(form, handler, conflictField) {
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const submit = form.querySelector('[type="submit"]');
      submit.disabled = true;
      try {
        await handler();
      } catch (err) {
        if (err.status !== 401) showFormError(form, err, conflictField);
      } finally {
        submit.disabled = false;
      }
    });
  }

  function toggleForm(form) {
    form.hidden = !form.hidden;
    if (!form.hidden) { form.querySelector('input, select, textarea').focus(); form.scrollIntoView({ block: 'nearest' }); }
  }

  // ------------------------------------------------------------------ layout pieces
  /** columns: [{label, cell(row) -> node|string, class}] */
  function dataTable(columns, rows, opts = {}) {
    if (!rows.length) return emptyBlock(opts.empty || 'Nothing here yet.', opts.emptyHint);
    return el('div', { class: 'table-wrap' }, el('table', { class: 'data', id: opts.id },
      el('thead', null, el('tr', null, columns.map((c) => el('th', { class: c.class, text: c.label })))),
      el('tbody', null, rows.map((r) => el('tr', opts.rowAttrs ? opts.rowAttrs(r) : null,
        columns.map((c) => el('td', { class: c.class }, c.cell(r))))))));
  }

  const pageHead = (title, subtitle, ...actions) => el('div', { class: 'page-head' },
    el('div', null, el('h1', { text: title }), subtitle ? el('p', { class: 'muted', text: subtitle }) : null),
    el('div', { class: 'actions' }, actions));

  const card = (title, ...children) => el('section', { class: 'card' }, title ? el('div', { class: 'card-head' }, title) : null, children);
  const countCard = (text, body) => card(el('h2', { text }), body);

  // ------------------------------------------------------------------ routing
  const ROUTES = [
    [/^#\/login$/, 'login'], [/^#\/tenants$/, 'tenants'], [/^#\/keys$/, 'keys'], [/^#\/users$/, 'users'],
    [/^#\/leaderboards(?:\/([^/]+))?$/, 'leaderboards'],
    [/^#\/leaderboards\/([^/]+)\/([^/]+)$/, 'leaderboard'],
    [/^#\/windows\/([^/]+)\/([^/]+)\/([^/]+)$/, 'window'],
  ];
  const VIEWS = { tenants: viewTenants, keys: viewKeys, users: viewUsers, leaderboards: viewLeaderboards, leaderboard: viewLeaderboard, window: viewWindow };

  function parseRoute(hash) {
    for (const [re, name] of ROUTES) {
      const m = re.exec(hash);
      if (!m) continue;
      try { return { name, params: m.slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p))) }; } catch { return null; }
    }
    return null;
  }

  function go(hash) {
    if (location.hash === hash) render();
    else location.hash = hash;
  }

  const lbHref = (t, id) => `#/leaderboards/${enc(t)}/${enc(id)}`;
  const lbPath = (t, id) => `/tenants/${enc(t)}/leaderboards/${enc(id)}`;
  const onCleanup = (fn) => state.cleanups.push(fn);

  function runCleanups() {
    for (const fn of state.cleanups.splice(0)) { try { fn(); } catch (e) { console.error(e); } }
  }

  function render() {
    runCleanups();
    if (!state.booted) return;
    const hash = location.hash;
    if (!hash || hash === '#' || hash === '#/') { location.replace('#/tenants'); return; }
    const route = parseRoute(hash);
    if (route && route.name === 'login') {
      if (!state.user) { viewLogin(); return; }
      const next = state.next || '#/tenants';
      state.next = null;
      go(next);
      return;
    }
    if (!state.user) { state.next = hash; go('#/login'); return; }
    if (!route) { go('#/tenants'); return; }
    const shell = ensureShell();
    setActiveNav(route.name);
    const view = el('div', { id: 'view', class: 'view', 'data-route': route.name, 'data-state': 'loading' }, loadingBlock());
    shell.main.replaceChildren(view);
    shell.main.scrollTop = 0;
    Promise.resolve()
      .then(() => VIEWS[route.name](view, ...route.params))
      .then(() => { if (view.dataset.state === 'loading') view.dataset.state = 'ready'; }, (err) => showViewError(view, err));
  }

  function showViewError(view, err) {
    if (err && err.status === 401) return;
    console.error(err);
    const message = err && err.status === 404 ? `Not found: ${err.message}` : (err && err.message) || String(err);
    view.replaceChildren(errorBlock(message, () => render()));
    view.dataset.state = 'error';
  }

  // ------------------------------------------------------------------ shell
  const NAV = [['leaderboards', 'Leaderboards'], ['tenants', 'Tenants'], ['keys', 'API keys'], ['users', 'Users', true]];

  function ensureShell() {
    if (state.shell && state.shell.node.isConnected) return state.shell;
    const crumbs = el('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' });
    const main = el('main', { class: 'content', id: 'main' });
    const links = NAV.filter(([, , adminOnly]) => !adminOnly || canWrite())
      .map(([name, label]) => el('a', { href: `#/${name}`, class: 'nav-link', 'data-nav': name, text: label }));
    const who = el('span', { class: 'who' },
      state.user.username ? el('span', { class: 'who-name', id: 'whoami', text: state.user.username }) : badge('dev mode', 'warn'),
      badge(state.user.role, 'role'));
    const logout = state.authEnabled ? el('button', { type: 'button', id: 'logout', class: 'btn ghost sm', text: 'Log out', onclick: logOut }) : null;
    const node = el('div', { class: 'app-shell' },
      el('aside', { class: 'sidebar' },
        el('a', { class: 'brand', href: '#/leaderboards' }, el('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'Phoenix'),
        el('nav', { class: 'nav', 'aria-label': 'Main' }, links),
        el('div', { class: 'sidebar-foot', text: 'Leaderboard console' })),
      el('div', { class: 'main-col' },
        el('header', { class: 'topbar' }, crumbs, el('div', { class: 'topbar-right' }, who, logout)),
        state.authEnabled ? null : el('div', { class: 'dev-banner', text: 'Development mode: authentication is disabled on this server. Anyone who can reach it has full access.' }),
        main));
    root().replaceChildren(node);
    state.shell = { node, main, crumbs };
    return state.shell;
  }

  function setActiveNav(routeName) {
    const active = routeName === 'leaderboard' || routeName === 'window' ? 'leaderboards' : routeName;
    state.shell.node.querySelectorAll('.nav-link').forEach((a) => {
      if (a.dataset.nav === active) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
  }

  /** parts: [[label, href?], ...] */
  function setCrumbs(parts) {
    document.title = `${parts.map((p) => p[0]).reverse().join(' · ')} · Phoenix`;
    state.shell.crumbs.replaceChildren(...parts.flatMap(([label, href], i) => [
      i ? el('span', { class: 'sep', 'aria-hidden': 'true', text: '/' }) : '',
      href ? el('a', { href, text: label }) : el('span', { class: 'current', text: label }),
    ]));
  }

  async function logOut() {
    try { await rawFetch('POST', '/auth/logout', {}); } catch { /* signed out locally either way */ }
    runCleanups();
    document.getElementById('toasts').replaceChildren();
    Object.assign(state, { user: null, shell: null, next: null });
    go('#/login');
  }

  // ------------------------------------------------------------------ login
  function viewLogin() {
    document.title = 'Sign in · Phoenix';
    const username = input('username', { id: 'login-username', autocomplete: 'username', required: true });
    const password = input('password', { id: 'login-password', type: 'password', autocomplete: 'current-password', required: true });
    const submit = el('button', { id: 'login-submit', type: 'submit', class: 'btn primary block', text: 'Sign in' });
    const form = el('form', { class: 'login-card', id: 'login-form', novalidate: true },
      el('div', { class: 'brand login-brand' }, el('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'Phoenix'),
      el('h1', { text: 'Sign in to the console' }),
      el('p', { class: 'muted', text: 'Manage tenants, keys and leaderboards, and watch rankings live.' }),
      field('Username', username), field('Password', password),
      el('div', { id: 'login-error', class: 'alert error', role: 'alert', hidden: true }), submit);
    form.addEventListener('submit', (ev) => { ev.preventDefault(); logIn(username.value.trim(), password.value, submit); });
    root().replaceChildren(el('div', { class: 'login-wrap' }, form));
    if (state.loginNotice) { showLoginError(state.loginNotice); state.loginNotice = null; }
    username.focus();
  }

  function showLoginError(message) {
    const node = document.getElementById('login-error');
    if (!node) return;
    node.textContent = message;
    node.hidden = !message;
  }

  async function logIn(username, password, submit) {
    showLoginError('');
    if (!username || !password) { showLoginError('Enter your username and password.'); return; }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      const res = await rawFetch('POST', '/auth/login', { username, password });
      if (res.status === 429) { throttled(res.headers.get('Retry-After'), submit); return; }
      const data = await parseResponse(res);
      state.user = { username: data.username || username, role: String(data.role || 'VIEWER').toUpperCase() };
      state.shell = null;
      const next = state.next || '#/tenants';
      state.next = null;
      go(next);
    } catch (err) {
      showLoginError(err.status === 401 ? 'Incorrect username or password.' : err.message);
    } finally {
      if (!submit.dataset.locked) { submit.disabled = false; submit.textContent = 'Sign in'; }
    }
  }

  /** Keeps the sign-in button locked for the Retry-After the server asked for. */
  function throttled(retryAfter, submit) {
    const wait = Math.max(1, parseInt(retryAfter, 10) || 30);
    submit.dataset.locked = '1';
    Object.assign(submit, { disabled: true, textContent: 'Please wait…' });
    showLoginError(`Too many attempts, try again in ${wait} s.`);
    setTimeout(() => {
      delete submit.dataset.locked;
      Object.assign(submit, { disabled: false, textContent: 'Sign in' });
    }, wait * 1000);
  }

  // ------------------------------------------------------------------ tenants
  const loadTenants = async () => listOf(await api('GET', '/tenants'), 'tenants');

  async function viewTenants(view) {
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
    view.replaceChildren(
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

  // ------------------------------------------------------------------ API keys
  async function viewKeys(view) {
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
    view.replaceChildren(
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
        el('div', { class: 'check-grid' }, SCOPES.map(([scope, label]) =>
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

  // ------------------------------------------------------------------ leaderboards list
  async function viewLeaderboards(view, tenantFilter) {
    setCrumbs(tenantFilter ? [['Leaderboards', '#/leaderboards'], [tenantFilter]] : [['Leaderboards']]);
    const tenants = await loadTenants().catch(() => []);
    const list = el('div');
    const filters = { status: '', text: '' };
    let records = [];
    const draw = () => list.replaceChildren(countCard(plural(records.length, 'leaderboard'),
      leaderboardTable(records.filter((r) => matchesFilter(r, filters)), reload)));
    async function reload() {
      records = listOf(await api('GET', tenantFilter ? `/tenants/${enc(tenantFilter)}/leaderboards` : '/leaderboards'), 'leaderboards');
      records.sort((a, b) => `${a.tenant_id}/${a.leaderboard_id}`.localeCompare(`${b.tenant_id}/${b.leaderboard_id}`));
      draw();
    }
    const form = writeOnly(() => leaderboardForm(tenants, tenantFilter, async (rec) => {
      toast(`Leaderboard ${rec.leaderboard_id} created`, 'success');
      await reload();
    }));
    await reload();
    view.replaceChildren(
      pageHead('Leaderboards', 'Competitions scored from your game events, with live rankings per time window.',
        btn('New leaderboard', () => toggleForm(form), { write: true, kind: 'primary', id: 'lb-new' })),
      form, filterBar(tenants, tenantFilter, filters, draw), list);
  }

  function matchesFilter(r, f) {
    if (f.status && r.status !== f.status) return false;
    const hay = `${r.leaderboard_id} ${r.name || ''} ${r.description || ''} ${r.tenant_id}`.toLowerCase();
    return !f.text || hay.includes(f.text.toLowerCase());
  }

  function filterBar(tenants, tenantFilter, filters, redraw) {
    const tenantSel = el('select', { id: 'lb-filter-tenant', 'aria-label': 'Tenant', value: tenantFilter || '' },
      el('option', { value: '', text: 'All tenants' }), tenants.map((t) => el('option', { value: t.tenant_id, text: t.tenant_id })));
    tenantSel.addEventListener('change', () => go(tenantSel.value ? `#/leaderboards/${enc(tenantSel.value)}` : '#/leaderboards'));
    const statusSel = el('select', { id: 'lb-filter-status', 'aria-label': 'Status' },
      el('option', { value: '', text: 'Any status' }), STATUSES.map((s) => el('option', { value: s, text: s })));
    statusSel.addEventListener('change', () => { filters.status = statusSel.value; redraw(); });
    const search = el('input', { type: 'search', id: 'lb-filter-text', 'aria-label': 'Search', placeholder: 'Search by id, name or description' });
    search.addEventListener('input', () => { filters.text = search.value.trim(); redraw(); });
    return el('div', { class: 'filter-bar' }, tenantSel, statusSel, search);
  }

  function leaderboardTable(records, reload) {
    return dataTable([
      {
        label: 'Leaderboard',
        cell: (r) => el('div', null,
          el('a', { class: 'lb-open strong', href: lbHref(r.tenant_id, r.leaderboard_id), text: r.name || r.leaderboard_id }),
          el('div', { class: 'muted small' }, mono(r.leaderboard_id))),
      },
      { label: 'Tenant', cell: (r) => mono(r.tenant_id) },
      { label: 'Status', cell: (r) => statusBadge(r.status) },
      { label: 'Timeframe', cell: (r) => describeTimeframe(r.config && r.config.timeframe) },
      { label: 'Scoring', cell: (r) => describeScoring(r.config && r.config.scoring) },
      { label: 'Ver.', class: 'num', cell: (r) => String(r.version ?? '—') },
      { label: 'Updated', cell: (r) => timeEl(r.updated_at) },
      { label: '', class: 'row-actions', cell: (r) => lbActions(r, reload, reload) },
    ], records, {
      id: 'lb-table',
      rowAttrs: (r) => ({ 'data-tenant': r.tenant_id, 'data-id': r.leaderboard_id }),
      empty: 'No leaderboards match.',
      emptyHint: canWrite() ? 'Create one with "New leaderboard" above.' : null,
    });
  }

  /** Status changes and delete for one record; nothing at all for VIEWERs. */
  function lbActions(rec, onChanged, onDeleted) {
    if (!canWrite()) return null;
    const path = lbPath(rec.tenant_id, rec.leaderboard_id);
    const label = rec.name || rec.leaderboard_id;
    const stops = 'It stops scoring events and live viewers are disconnected. You can activate it again later.';
    const setStatus = (status, verb) => act(verb && { title: `${verb} "${label}"?`, body: stops, action: verb },
      () => api('PATCH', path, { status }),
      async () => { toast(`"${label}" is now ${status}`, 'success'); await onChanged(); });
    const remove = () => act({
      title: `Delete "${label}"?`, action: 'Delete leaderboard', danger: true,
      body: 'The configuration is removed and live viewers are disconnected. Past windows stay readable by their ids.',
    }, () => api('DELETE', path), async () => { toast(`"${label}" deleted`, 'success'); await onDeleted(); });
    return el('div', { class: 'btn-row' },
      rec.status !== 'active' ? btn('Activate', () => setStatus('active'), { write: true, sm: true }) : null,
      rec.status === 'active' ? btn('Deactivate', () => setStatus('inactive', 'Deactivate'), { write: true, sm: true }) : null,
      rec.status !== 'archived' ? btn('Archive', () => setStatus('archived', 'Archive'), { write: true, sm: true }) : null,
      btn('Delete', remove, { write: true, sm: true, kind: 'danger-ghost' }));
  }

  // ------------------------------------------------------------------ leaderboard create form
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

  function leaderboardForm(tenants, defaultTenant, onCreated) {
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

  // ------------------------------------------------------------------ leaderboard detail
  async function viewLeaderboard(view, tenant, id) {
    setCrumbs([['Leaderboards', '#/leaderboards'], [tenant, `#/leaderboards/${enc(tenant)}`], [id]]);
    const rec = await api('GET', lbPath(tenant, id));
    const cfg = isObj(rec.config) ? rec.config : {};
    const rk = isObj(cfg.ranking) ? cfg.ranking : {};
    const live = liveSection();
    const windows = windowsSection(tenant, id);
    view.replaceChildren(
      el('div', { class: 'page-head' },
        el('div', null,
          el('h1', null, rec.name || rec.leaderboard_id, ' ', statusBadge(rec.status)),
          el('p', { class: 'muted meta-line' }, mono(`${rec.tenant_id} / ${rec.leaderboard_id}`),
            ` · version ${rec.version ?? '—'} · ${describeTimeframe(cfg.timeframe)} · ${describeScoring(cfg.scoring)}`,
            ` · top ${rk.size ?? 1000}${rk.method === 'score_asc' ? ', lowest first' : ''}`),
          rec.description ? el('p', { class: 'description', text: rec.description }) : null),
        el('div', { class: 'actions' }, lbActions(rec, () => render(), () => go(`#/leaderboards/${enc(tenant)}`)))),
      live.node, windows.node,
      el('details', { class: 'card config-details' }, el('summary', { text: 'Configuration (JSON)' }),
        el('pre', { class: 'json', text: JSON.stringify(cfg, null, 2) })));
    view.dataset.state = 'ready';
    if (rec.status === 'active') onCleanup(startLive(tenant, id, live, () => windows.reload()));
    else {
      live.setStatus('closed', 'not live');
      live.setMessage(`This leaderboard is ${rec.status}: it does not score events, so there is nothing to watch live.`, 'warn');
    }
    windows.reload();
  }

  function liveSection() {
    const pill = el('span', { id: 'live-status', class: 'pill', 'data-state': 'connecting', text: 'connecting' });
    const stat = (label, id) => el('div', { class: 'stat' }, el('span', { class: 'stat-label', text: label }), el('span', { class: 'stat-value', id, text: '—' }));
    const message = el('div', { id: 'live-message', class: 'live-message', hidden: true });
    const tbody = el('tbody');
    const th = (text, cls, label) => el('th', { class: cls, text, 'aria-label': label });
    const node = el('section', { class: 'card live-card' },
      el('div', { class: 'card-head' }, el('h2', { text: 'Live standings' }), pill),
      el('div', { class: 'stats' },
        stat('Window', 'live-window'), stat('Starts', 'live-starts'), stat('Ends', 'live-ends'),
        stat('Entries shown', 'live-count'), stat('Last update', 'live-updated')),
      message,
      el('div', { class: 'table-wrap' }, el('table', { class: 'data live', id: 'live-table' },
        el('thead', null, el('tr', null, th('Rank', 'rank'), th('', 'move', 'Movement'), th('Player'), th('Score', 'num'), th('Updated', 'num'))),
        tbody)));
    const set = (id, ...content) => node.querySelector(`#${id}`).replaceChildren(...content);
    return {
      node, tbody,
      setStatus(s, text) { pill.dataset.state = s; pill.textContent = text || s; },
      setMessage(text, kind = 'info', action) {
        message.hidden = !text;
        message.className = `live-message ${kind}`;
        message.replaceChildren(text || '', action || '');
      },
      clearError() { if (message.classList.contains('error')) this.setMessage(''); },
      setWindow(w) {
        set('live-window', w && w.id ? mono(w.id) : '—');
        set('live-starts', w ? timeEl(w.starts_at) : '—');
        set('live-ends', !w ? '—' : w.ends_at ? timeEl(w.ends_at) : 'never (all time)');
      },
      setCount(n) { set('live-count', String(n)); },
      touched() { set('live-updated', timeEl(new Date().toISOString(), fmtClock)); },
    };
  }

  /** Connects the live view over the WebSocket; returns the function that stops it for good. */
  function startLive(tenant, id, ui, onWindowClosed) {
    const entries = new Map();   // user_id -> entry
    const rows = new Map();      // user_id -> <tr>
    const emptyRow = el('tr', { class: 'empty-row' }, el('td', { colspan: 5, text: 'No scores in this window yet. Rankings appear here as events arrive.' }));
    let ws = null;
    let attempts = 0;
    let timer = null;
    let stopped = false;

    function connect() {
      clearTimeout(timer);
      const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
      // The Admin gateway's socket: same origin as this page even when the Query gateway listens elsewhere.
      const url = `${scheme}://${location.host}/tenants/${enc(tenant)}/leaderboards/${enc(id)}/ws`;
      let opened = false;
      ui.setStatus(attempts ? 'reconnecting' : 'connecting');
      const socket = new WebSocket(url);
      socket.addEventListener('open', () => { opened = true; socket.send(JSON.stringify({ type: 'subscribe', top: LIVE_TOP })); });
      socket.addEventListener('message', (ev) => onMessage(socket, ev.data));
      socket.addEventListener('close', (ev) => onClose(ev, opened));
      ws = socket;
    }

    function onMessage(socket, data) {
      let msg;
      try { msg = JSON.parse(data); } catch { return; }
      if (msg.type === 'snapshot') applySnapshot(msg);
      else if (msg.type === 'update') applyUpdate(msg);
      else if (msg.type === 'ping') socket.send(JSON.stringify({ type: 'pong' }));
      else if (msg.type === 'error') ui.setMessage(`Server: ${(msg.error && msg.error.message) || 'error'}`, 'error');
      else if (msg.type === 'window_closed') {
        ui.setMessage(`Window ${(msg.window && msg.window.id) || ''} closed; its final standings are under Past windows.`, 'info');
        onWindowClosed();
      }
    }

    const differs = (a, b) => !a || a.rank !== b.rank || a.score !== b.score;

    function applySnapshot(msg) {
      attempts = 0;
      const prev = new Map(entries);
      entries.clear();
      for (const e of msg.entries || []) entries.set(e.user_id, e);
      const changed = new Set(prev.size ? [...entries.values()].filter((e) => differs(prev.get(e.user_id), e)).map((e) => e.user_id) : []);
      ui.setWindow(msg.window);
      ui.setStatus('live');
      ui.clearError();
      draw(changed, prev);
    }

    function applyUpdate(msg) {
      const prev = new Map(entries);
      const changed = new Set();
      for (const u of msg.removed || []) entries.delete(u);
      for (const e of msg.entries || []) {
        if (differs(entries.get(e.user_id), e)) changed.add(e.user_id);
        entries.set(e.user_id, e);
      }
      draw(changed, prev);
    }

    /** Keyed update of the table: rows move rather than being rebuilt, so highlights land on the right players. */
    function draw(changed, prev) {
      const list = [...entries.values()].sort((a, b) => a.rank - b.rank || String(a.user_id).localeCompare(String(b.user_id)));
      const { tbody } = ui;
      if (!list.length) tbody.replaceChildren(emptyRow);
      else emptyRow.remove();
      list.forEach((e, i) => {
        let tr = rows.get(e.user_id);
        if (!tr) rows.set(e.user_id, (tr = makeRow(e.user_id)));
        fillRow(tr, e, prev.get(e.user_id), changed.has(e.user_id));
        if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      });
      for (const [user, tr] of rows) if (!entries.has(user)) { tr.remove(); rows.delete(user); }
      ui.setCount(list.length);
      ui.touched();
    }

    const makeRow = (user) => el('tr', { 'data-user': user },
      el('td', { class: 'rank' }), el('td', { class: 'move' }), el('td', { class: 'player', text: user }),
      el('td', { class: 'score num' }), el('td', { class: 'updated num muted' }));

    function fillRow(tr, e, before, changed) {
      const [rank, move, , score, updated] = tr.children;
      rank.textContent = String(e.rank);
      rank.dataset.top = e.rank <= 3 ? String(e.rank) : '';
      score.textContent = fmtScore(e.score);
      updated.replaceChildren(timeEl(e.updated_at, fmtClock));
      if (!changed) return;
      const delta = before ? before.rank - e.rank : 0;
      move.textContent = !before ? 'new' : delta > 0 ? `▲${delta}` : delta < 0 ? `▼${-delta}` : '';
      move.className = `move ${!before ? 'entered' : delta > 0 ? 'up' : delta < 0 ? 'down' : ''}`;
      tr.classList.remove('flash');
      void tr.offsetWidth; // restart the highlight animation
      tr.classList.add('flash');
    }

    async function onClose(ev, opened) {
      ws = null;
      if (stopped) return;
      const why = `${CLOSE_REASONS[ev.code] || `The connection closed (code ${ev.code}).`}${ev.reason ? ` (${ev.reason})` : ''}`;
      if (ev.code === 4404 || ev.code === 4410) {
        ui.setStatus('closed');
        const again = ev.code === 4404 ? el('button', { type: 'button', class: 'btn secondary sm', text: 'Reconnect', onclick: () => { attempts = 0; connect(); } }) : null;
        ui.setMessage(`${why} `, 'warn', again);
        return;
      }
      if (!opened) { // the upgrade was refused: check the session (refreshes it, or sends us to sign in)
        try { await api('GET', '/auth/me'); } catch (err) { if (err.status === 401) return; }
        if (stopped) return;
      }
      attempts += 1;
      const delay = Math.min(30000, 1000 * 2 ** Math.min(attempts - 1, 5)) * (0.8 + Math.random() * 0.4);
      ui.setStatus('reconnecting');
      ui.setMessage(`${why} Reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`, 'error');
      timer = setTimeout(connect, delay);
    }

    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      if (ws) ws.close(1000, 'leaving');
    };
  }

  // ------------------------------------------------------------------ past windows
  function windowsSection(tenant, id) {
    const list = el('div', { class: 'windows-list' }, loadingBlock());
    const standings = el('div', { id: 'window-standings', class: 'window-standings' },
      emptyBlock('Choose a window', 'Its frozen final standings appear here.'));
    const node = card(el('h2', { text: 'Past windows' }), el('div', { class: 'windows-grid' }, list, standings));
    let selected = null;
    function open(windowId) {
      selected = windowId;
      list.querySelectorAll('tr[data-window]').forEach((tr) => tr.classList.toggle('selected', tr.dataset.window === windowId));
      windowStandings(standings, tenant, id, windowId);
    }
    const table = (windows) => dataTable([
      {
        label: 'Window',
        cell: (w) => el('a', {
          href: `#/windows/${enc(tenant)}/${enc(id)}/${enc(w.id)}`, class: 'window-link',
          onclick: (ev) => { ev.preventDefault(); open(w.id); },
        }, mono(w.id)),
      },
      { label: 'Period', cell: (w) => el('span', { class: 'period' }, timeEl(w.starts_at), ' → ', w.ends_at ? timeEl(w.ends_at) : 'no end') },
      { label: 'Status', cell: (w) => statusBadge(w.status || 'closed') },
    ], windows, { id: 'windows-table', rowAttrs: (w) => ({ 'data-window': w.id, class: w.id === selected ? 'selected' : null }) });
    async function reload() {
      try {
        const windows = listOf(await api('GET', `${lbPath(tenant, id)}/windows`), 'windows');
        windows.sort((a, b) => String(b.starts_at).localeCompare(String(a.starts_at)));
        list.replaceChildren(windows.length ? table(windows) : emptyBlock('No past windows yet.', 'Windows show up here once they close.'));
      } catch (err) {
        if (err.status !== 401) list.replaceChildren(errorBlock(err.message, reload));
      }
    }
    return { node, reload };
  }

  /** Frozen standings of one window, a page at a time. */
  function windowStandings(container, tenant, id, windowId) {
    const cursors = [''];
    let page = 0;
    const turn = (by) => () => { page += by; load(); };
    async function load() {
      container.replaceChildren(loadingBlock());
      let data;
      try {
        const cursor = cursors[page] ? `&cursor=${enc(cursors[page])}` : ''; // the first page has none
        data = await api('GET', `${lbPath(tenant, id)}/windows/${enc(windowId)}?limit=${PAGE_SIZE}${cursor}`);
      } catch (err) {
        if (err.status !== 401) container.replaceChildren(errorBlock(err.message, load));
        return;
      }
      if (data.next_cursor) cursors[page + 1] = data.next_cursor;
      const w = data.window || {};
      const total = data.total_entries ?? 0;
      container.replaceChildren(
        el('div', { class: 'window-head' },
          el('div', null, el('strong', null, 'Window ', mono(w.id || windowId)), ' ', statusBadge(w.status || 'closed')),
          el('div', { class: 'muted small' }, timeEl(w.starts_at), ' → ', w.ends_at ? timeEl(w.ends_at) : 'no end',
            ` · ${plural(total, 'ranked entry', 'ranked entries')}`)),
        dataTable([
          { label: 'Rank', class: 'rank', cell: (e) => String(e.rank) },
          { label: 'Player', cell: (e) => e.user_id },
          { label: 'Score', class: 'score num', cell: (e) => fmtScore(e.score) },
          { label: 'Updated', class: 'num muted', cell: (e) => timeEl(e.updated_at) },
        ], listOf(data, 'entries'), { id: 'window-entries', rowAttrs: (e) => ({ 'data-user': e.user_id }), empty: 'Nobody scored in this window.' }),
        el('div', { class: 'pager' },
          page > 0 ? el('button', { type: 'button', class: 'btn secondary sm', id: 'window-prev', text: 'Previous page', onclick: turn(-1) }) : null,
          el('span', { class: 'muted small', text: `Page ${page + 1} of ${Math.max(1, Math.ceil(total / PAGE_SIZE))}` }),
          data.next_cursor ? el('button', { type: 'button', class: 'btn secondary sm', id: 'window-next', text: 'Next page', onclick: turn(1) }) : null));
    }
    load();
  }

  async function viewWindow(view, tenant, id, windowId) {
    setCrumbs([['Leaderboards', '#/leaderboards'], [id, lbHref(tenant, id)], [`Window ${windowId}`]]);
    const standings = el('div', { id: 'window-standings', class: 'window-standings' });
    view.replaceChildren(
      pageHead(`Window ${windowId}`, `Final standings of ${tenant} / ${id}`,
        el('a', { class: 'btn secondary', href: lbHref(tenant, id), text: 'Back to leaderboard' })),
      card(null, standings));
    windowStandings(standings, tenant, id, windowId);
  }

  // ------------------------------------------------------------------ users
  async function viewUsers(view) {
    setCrumbs([['Users']]);
    if (!canWrite()) {
      view.replaceChildren(pageHead('Users'), emptyBlock('Only administrators can manage console users.'));
      return;
    }
    const list = el('div');
    const reload = async () => {
      const users = listOf(await api('GET', '/users'), 'users');
      list.replaceChildren(countCard(plural(users.length, 'user'), userTable(users, reload)));
    };
    const form = writeOnly(() => userForm(async (u) => { toast(`User ${u.username} created`, 'success'); await reload(); }));
    await reload();
    view.replaceChildren(
      pageHead('Users', 'People who can sign in to this console. VIEWERs see everything and change nothing.',
        btn('New user', () => toggleForm(form), { write: true, kind: 'primary', id: 'user-new' })),
      form, list);
  }

  function userForm(onCreated) {
    const form = cardForm({ id: 'user-form', title: 'New user', submitId: 'user-create-submit', submitLabel: 'Create user' },
      el('div', { class: 'grid-3' },
        field('Username', input('username')),
        field('Password', input('password', { type: 'password', autocomplete: 'new-password' })),
        field('Role', select('role', [['VIEWER', 'VIEWER (read-only)'], ['ADMIN', 'ADMIN (full access)']], 'VIEWER'))));
    onSubmit(form, async () => {
      const body = { username: form.elements.username.value.trim(), password: form.elements.password.value, role: form.elements.role.value };
      const created = await api('POST', '/users', body);
      form.reset();
      form.hidden = true;
      await onCreated(created || body);
    }, 'username');
    return form;
  }

  function userTable(users, reload) {
    const me = state.user.username;
    const changeRole = (u, role) => act(
      { title: `Make ${u.username} ${role}?`, body: role === 'ADMIN' ? 'They will be able to change everything, including users.' : 'They will keep read access only.', action: `Make ${role}` },
      () => api('PATCH', `/users/${enc(u.username)}`, { role }),
      async () => { toast(`${u.username} is now ${role}`, 'success'); await reload(); });
    const remove = (u) => act({
      title: `Delete user ${u.username}?`, action: 'Delete user', danger: true,
      body: u.username === me ? 'This is your own account: you will be signed out and cannot sign in again.' : 'They can no longer sign in.',
    }, () => api('DELETE', `/users/${enc(u.username)}`), async () => {
      toast(`User ${u.username} deleted`, 'success');
      await (u.username === me ? logOut() : reload());
    });
    return dataTable([
      { label: 'Username', cell: (u) => el('span', null, el('strong', { text: u.username }), u.username === me ? [' ', badge('you', 'info')] : null) },
      { label: 'Role', cell: (u) => badge(u.role, u.role === 'ADMIN' ? 'warn' : 'info') },
      { label: 'Created', cell: (u) => timeEl(u.created_at) },
      { label: 'Updated', cell: (u) => timeEl(u.updated_at) },
      {
        label: '', class: 'row-actions',
        cell: (u) => el('div', { class: 'btn-row' },
          btn(u.role === 'ADMIN' ? 'Make VIEWER' : 'Make ADMIN', () => changeRole(u, u.role === 'ADMIN' ? 'VIEWER' : 'ADMIN'), { write: true, sm: true }),
          btn('Set password', () => setPassword(u), { write: true, sm: true }),
          btn('Delete', () => remove(u), { write: true, sm: true, kind: 'danger-ghost' })),
      },
    ], users, { id: 'users-table', rowAttrs: (u) => ({ 'data-username': u.username }), empty: 'No users.' });
  }

  function setPassword(u) {
    const dlg = el('dialog', { class: 'modal' });
    const form = el('form', { novalidate: true },
      el('h2', { text: `Set a password for ${u.username}` }),
      el('div', { class: 'form-summary', role: 'alert', hidden: true }),
      field('New password', input('password', { type: 'password', autocomplete: 'new-password', id: 'pw-new' })),
      el('div', { class: 'modal-actions' },
        el('button', { type: 'button', class: 'btn secondary', text: 'Cancel', onclick: () => dlg.close() }),
        writeOnly(() => el('button', { type: 'submit', class: 'btn primary', text: 'Save password' }))));
    onSubmit(form, async () => {
      await api('PATCH', `/users/${enc(u.username)}`, { password: form.elements.password.value });
      dlg.close();
      toast(`Password of ${u.username} changed`, 'success');
    });
    dlg.append(form);
    dlg.addEventListener('close', () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
    form.elements.password.focus();
  }

  // ------------------------------------------------------------------ boot
  async function boot() {
    root().replaceChildren(el('div', { class: 'boot-screen' }, loadingBlock('Starting the console…')));
    let config;
    try {
      config = await parseResponse(await rawFetch('GET', '/auth/config'));
    } catch (err) {
      root().replaceChildren(el('div', { class: 'boot-screen' }, errorBlock(`The console could not reach the server: ${err.message}`, boot)));
      return;
    }
    state.authEnabled = !(config && config.authentication_enabled === false);
    if (!state.authEnabled) state.user = { username: null, role: 'ADMIN' };
    else {
      try {
        const me = await api('GET', '/auth/me', undefined, { noRedirect: true });
        state.user = me && me.role ? { username: me.username, role: String(me.role).toUpperCase() } : null;
      } catch (err) {
        state.user = null;
        if (err.status !== 401) console.warn('GET /auth/me failed:', err);
      }
    }
    if (!state.booted) window.addEventListener('hashchange', render);
    state.booted = true;
    render();
  }

  boot();
})();
