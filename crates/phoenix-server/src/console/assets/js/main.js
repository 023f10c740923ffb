/*
 * Phoenix web console: a dependency-free single-page app served at /console, as ES modules without a
 * build step. This module boots it, routes the hash to a page and draws the shell around it.
 *
 * Rules the modules keep:
 * - Server data reaches the page only through textContent and attributes (the el() helper), never innerHTML.
 * - The session lives in HttpOnly cookies set by the server; nothing is kept in localStorage.
 * - Every write control carries `data-write` and is not rendered at all for VIEWERs (btn() and writeOnly()).
 */
import { viewAchievement } from './achievement.js';
import { viewAchievements } from './achievements.js';
import { api, parseResponse, rawFetch } from './api.js';
import { viewCampaign } from './campaign.js';
import { viewCoupons } from './coupons.js';
import { viewKeys } from './keys.js';
import { viewLeaderboard } from './leaderboard.js';
import { viewLeaderboards } from './leaderboards.js';
import { logOut, viewLogin } from './login.js';
import { viewRewards } from './rewards.js';
import { viewRule } from './rule.js';
import { go, render, runCleanups, setRenderer } from './router.js';
import { canWrite, state } from './state.js';
import { viewTenants } from './tenants.js';
import { badge, el, errorBlock, listOf, loadingBlock, root } from './ui.js';
import { viewUsers } from './users.js';
import { viewWebhook } from './webhook.js';
import { viewWebhooks } from './webhooks.js';
import { viewWindow } from './windows.js';

// ------------------------------------------------------------------ routing
const ROUTES = [
  [/^#\/login$/, 'login'], [/^#\/tenants$/, 'tenants'], [/^#\/keys$/, 'keys'], [/^#\/users$/, 'users'],
  [/^#\/leaderboards(?:\/([^/]+))?$/, 'leaderboards'],
  [/^#\/leaderboards\/([^/]+)\/([^/]+)$/, 'leaderboard'],
  [/^#\/windows\/([^/]+)\/([^/]+)\/([^/]+)$/, 'window'],
  [/^#\/rewards(?:\/([^/]+))?$/, 'rewards'],
  [/^#\/rewards\/([^/]+)\/([^/]+)$/, 'rule'],
  [/^#\/coupons(?:\/([^/]+))?$/, 'coupons'],
  [/^#\/coupons\/([^/]+)\/([^/]+)$/, 'campaign'],
  [/^#\/achievements(?:\/([^/]+))?$/, 'achievements'],
  [/^#\/achievements\/([^/]+)\/([^/]+)$/, 'achievement'],
  [/^#\/webhooks(?:\/([^/]+))?$/, 'webhooks'],
  [/^#\/webhooks\/([^/]+)\/([^/]+)$/, 'webhook'],
];
const VIEWS = {
  tenants: viewTenants, keys: viewKeys, users: viewUsers, leaderboards: viewLeaderboards, leaderboard: viewLeaderboard, window: viewWindow,
  rewards: viewRewards, rule: viewRule, coupons: viewCoupons, campaign: viewCampaign,
  achievements: viewAchievements, achievement: viewAchievement, webhooks: viewWebhooks, webhook: viewWebhook,
};
/** The navigation entry a page belongs under, when it is not its own. */
const NAV_PARENT = {
  leaderboard: 'leaderboards', window: 'leaderboards', rule: 'rewards', campaign: 'coupons', achievement: 'achievements', webhook: 'webhooks',
};

function parseRoute(hash) {
  for (const [re, name] of ROUTES) {
    const m = re.exec(hash);
    if (!m) continue;
    try { return { name, params: m.slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p))) }; } catch { return null; }
  }
  return null;
}

function renderRoute() {
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
const NAV = [
  ['leaderboards', 'Leaderboards'], ['rewards', 'Rewards'], ['coupons', 'Coupons'], ['achievements', 'Achievements'], ['webhooks', 'Webhooks'],
  ['tenants', 'Tenants'], ['keys', 'API keys'], ['users', 'Users', true],
];

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
  const active = NAV_PARENT[routeName] || routeName;
  state.shell.node.querySelectorAll('.nav-link').forEach((a) => {
    if (a.dataset.nav === active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
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
  state.scopes = listOf(config, 'scopes');
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
  if (!state.booted) window.addEventListener('hashchange', renderRoute);
  state.booted = true;
  renderRoute();
}

setRenderer(renderRoute);
boot();
