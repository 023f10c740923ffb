/*
 * What every module of the console shares: who is signed in, whether the server asks anyone to sign
 * in, the admin scopes it knows, where to go after signing in, the shell around the pages, and the
 * current page's cleanups.
 */

export const state = {
  booted: false, authEnabled: true,
  scopes: [],          // [{scope, label}] from GET /auth/config, for the API key form
  user: null,          // {username, role}
  next: null,          // route to return to after signing in
  loginNotice: null,   // message for the sign-in page (e.g. session expired)
  shell: null, cleanups: [],
};

export const canWrite = () => !!state.user && state.user.role === 'ADMIN';
