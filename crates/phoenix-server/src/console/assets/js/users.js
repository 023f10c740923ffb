/*
 * The users page (ADMINs only): console users, their roles and passwords.
 */
import { api } from './api.js';
import { cardForm, field, input, onSubmit, select, toggleForm } from './forms.js';
import { logOut } from './login.js';
import { setCrumbs } from './router.js';
import { canWrite, state } from './state.js';
import { act, badge, btn, countCard, dataTable, el, emptyBlock, enc, listOf, pageHead, plural, timeEl, toast, writeOnly } from './ui.js';

export async function viewUsers(view) {
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
