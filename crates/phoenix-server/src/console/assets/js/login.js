/*
 * Signing in (with the server's throttling honoured) and out.
 */
import { parseResponse, rawFetch } from './api.js';
import { field, input } from './forms.js';
import { go, runCleanups } from './router.js';
import { state } from './state.js';
import { el, root } from './ui.js';

export async function logOut() {
  try { await rawFetch('POST', '/auth/logout', {}); } catch { /* signed out locally either way */ }
  runCleanups();
  document.getElementById('toasts').replaceChildren();
  Object.assign(state, { user: null, shell: null, next: null });
  go('#/login');
}

// ------------------------------------------------------------------ login
export function viewLogin() {
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
