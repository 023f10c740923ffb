// Browser tests of the Phoenix web console, driven with playwright-core against a running server.
//
// Inputs (environment): PHOENIX_URL, ADMIN_USER, ADMIN_PASSWORD, VIEWER_USER, VIEWER_PASSWORD,
// TENANT_ID (an existing tenant without leaderboards), PLAYER_TOKEN (a tenant JWT for TENANT_ID),
// SCREENSHOT_DIR (where PNGs go), CHROMIUM (optional browser path, default /usr/bin/chromium).
// The server must accept webhook URLs on 127.0.0.1 (PHOENIX_WEBHOOK_ALLOW_PRIVATE): the webhook steps
// point one at a receiver this script runs.
//
// Prints `ok - <step>` / `not ok - <step>: <error>` and exits non-zero when a step failed.
// Waiting is done with Playwright's auto-waiting locators and in-page polling, never fixed sleeps.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createHmac, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

const TIMEOUT = 15_000;
// DEV_MODE=1: the server runs with PHOENIX_AUTH_ENABLED=false, and only the development-mode step runs.
const DEV_MODE = process.env.DEV_MODE === '1';
const REQUIRED = DEV_MODE
  ? ['PHOENIX_URL', 'TENANT_ID', 'SCREENSHOT_DIR']
  : ['PHOENIX_URL', 'ADMIN_USER', 'ADMIN_PASSWORD', 'VIEWER_USER', 'VIEWER_PASSWORD', 'TENANT_ID', 'PLAYER_TOKEN', 'SCREENSHOT_DIR'];
const missing = REQUIRED.filter((name) => !process.env[name]);
if (missing.length) {
  console.error(`missing environment: ${missing.join(', ')}`);
  process.exit(2);
}
const env = Object.fromEntries(REQUIRED.map((name) => [name, process.env[name]]));
const BASE = env.PHOENIX_URL.replace(/\/+$/, '');
const LB_ID = 'live-test';
mkdirSync(env.SCREENSHOT_DIR, { recursive: true });

// ------------------------------------------------------------------ helpers
function fail(message) { throw new Error(message); }

async function shot(page, name) {
  await page.screenshot({ path: join(env.SCREENSHOT_DIR, name) });
}

/** Waits until `selector` exists and its trimmed text equals `text` (polled in the page). */
async function waitForText(page, selector, text, what) {
  try {
    await page.waitForFunction(([sel, want]) => {
      const node = document.querySelector(sel);
      return !!node && node.textContent.trim() === want;
    }, [selector, text], { timeout: TIMEOUT, polling: 100 });
  } catch {
    const actual = await page.locator(selector).first().textContent({ timeout: 500 }).catch(() => null);
    fail(`${what}: expected "${text}" in ${selector}, found ${actual === null ? 'no element' : `"${actual.trim()}"`}`);
  }
}

async function visible(locator, what) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout: TIMEOUT });
  } catch {
    fail(`${what} did not become visible within ${TIMEOUT / 1000} s`);
  }
}

/** Waits for the routed view to finish loading (the console sets data-state on #view). */
async function viewSettled(page, route) {
  await visible(page.locator(`#view[data-route="${route}"]:is([data-state="ready"], [data-state="error"])`), `the ${route} page`);
}

async function logIn(page, user, password) {
  await visible(page.locator('#login-username'), 'the login form');
  await page.fill('#login-username', user);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
}

/** After submitting the login form: waits for the tenants page, or fails with the login error shown. */
async function expectSignedIn(page, who) {
  await page.waitForFunction(() => {
    const error = document.querySelector('#login-error');
    return location.hash === '#/tenants' || (error && !error.hidden && error.textContent.trim() !== '');
  }, null, { timeout: TIMEOUT, polling: 100 }).catch(() => fail(`${who} was neither signed in nor shown an error`));
  if (!/#\/tenants$/.test(page.url())) fail(`${who} could not sign in: ${(await page.textContent('#login-error')).trim()}`);
}

async function postEvent(type, user, attrs) {
  const res = await fetch(`${BASE}/v1/events`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${env.PLAYER_TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      event_id: `console-test-${randomUUID()}`,
      type,
      actor: { user_id: user },
      occurred_at: new Date().toISOString(),
      attrs,
    }),
  });
  if (res.status !== 202) fail(`POST /v1/events (${type}) for ${user} answered ${res.status}: ${await res.text()}`);
}

const postScore = (user, score) => postEvent('match.completed', user, { score });

/** Clicks `refresh` (or reloads the page) until `locator` is there: for what the server does in the background. */
async function untilShown(page, locator, refresh, what) {
  const deadline = Date.now() + TIMEOUT;
  while (!(await locator.count())) {
    if (Date.now() > deadline) fail(`${what} did not show within ${TIMEOUT / 1000} s`);
    await refresh();
    // A refresh first replaces the list with a loading block: give the refreshed list time to draw
    // before looking again (looking at once only ever saw the loading block).
    await locator.first().waitFor({ state: 'attached', timeout: 1_000 }).catch(() => {});
  }
}

/**
 * The webhook receiver: a plain HTTP server on 127.0.0.1 that records each request and answers
 * `status` (200 unless a step says otherwise).
 */
const receiver = { server: null, url: null, status: 200, got: [] };

async function startReceiver() {
  receiver.server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      receiver.got.push({ id: req.headers['webhook-id'], timestamp: req.headers['webhook-timestamp'], signature: req.headers['webhook-signature'] || '', body });
      res.writeHead(receiver.status).end();
    });
  });
  await new Promise((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${receiver.server.address().port}/hook`;
}

/** Whether a received request carries a valid Standard Webhooks signature by `secret` (whsec_...). */
function signedBy(request, secret) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = `v1,${createHmac('sha256', key).update(`${request.id}.${request.timestamp}.${request.body}`).digest('base64')}`;
  return request.signature.split(' ').includes(expected);
}

const rankCell = (user) => `#live-table tr[data-user="${user}"] td.rank`;
const WRITE_WORDS = /create|new|delete|revoke|rotate|activate|deactivate|archive|void|settle|generate|enable|disable|edit|add|save/i;

async function assertNoWriteControls(page, where) {
  const marked = await page.locator('[data-write]').count();
  if (marked !== 0) fail(`${where}: ${marked} element(s) marked data-write are rendered for a VIEWER`);
  const buttons = await page.locator('button').allTextContents();
  const offending = buttons.map((t) => t.trim()).filter((t) => WRITE_WORDS.test(t));
  if (offending.length) fail(`${where}: write buttons rendered for a VIEWER: ${offending.join(', ')}`);
  if (await page.locator('a[href="#/users"]').count()) fail(`${where}: the Users link is shown to a VIEWER`);
  // A write form left out must leave nothing behind (not even the text "null").
  const stray = await page.locator('#view').evaluate((view) => [...view.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim()).length);
  if (stray) fail(`${where}: stray text in the page where a write form would be`);
}

/** Opens a per-tenant page (Rewards, Coupons, Achievements, Webhooks) from the navigation, for TENANT_ID. */
async function openTenantPage(page, route) {
  await page.click(`a.nav-link[data-nav="${route}"]`);
  const ready = page.locator(`#view[data-route="${route}"][data-tenant="${env.TENANT_ID}"][data-state="ready"]`);
  // The page shows the tenant last chosen (or the only one); otherwise it asks.
  await page.waitForFunction((r) => !!document.querySelector(`#view[data-route="${r}"][data-state="ready"]`), route,
    { timeout: TIMEOUT, polling: 100 });
  if (!(await ready.count())) await page.locator(`#${route}-tenant`).selectOption(env.TENANT_ID);
  await visible(ready, `the ${route} page of ${env.TENANT_ID}`);
}

/** Waits until the grants list shows the lookup it was asked for (its summary names it). */
async function grantsListed(page, text) {
  await page.waitForFunction((want) => {
    const node = document.querySelector('#grants-total');
    return !!node && node.textContent.includes(want);
  }, text, { timeout: TIMEOUT, polling: 100 }).catch(() => fail(`the grants list never showed "${text}"`));
}

// ------------------------------------------------------------------ steps
async function login_rejects_wrong_password(page) {
  await page.goto(`${BASE}/console`);
  await logIn(page, env.ADMIN_USER, `wrong-${randomUUID()}`);
  const error = page.locator('#login-error');
  await visible(error, '#login-error');
  const text = (await error.textContent()).trim();
  if (!text) fail('#login-error is visible but empty');
  await shot(page, '01-login-error.png');
}

async function admin_logs_in(page) {
  await logIn(page, env.ADMIN_USER, env.ADMIN_PASSWORD);
  await expectSignedIn(page, 'the ADMIN');
  await visible(page.locator(`#tenants-table tr[data-tenant="${env.TENANT_ID}"]`), `tenant ${env.TENANT_ID} in the tenants table`);
  await shot(page, '02-tenants.png');
}

async function create_leaderboard_shows_field_error_first(page) {
  await page.click('a[href="#/leaderboards"]');
  await viewSettled(page, 'leaderboards');
  await page.click('#lb-new');
  const form = page.locator('#lb-form');
  await visible(form, 'the leaderboard form');
  await form.locator('[name="tenant_id"]').selectOption(env.TENANT_ID);
  await form.locator('[name="leaderboard_id"]').fill(LB_ID);
  await form.locator('[name="name"]').fill('Live test');
  await form.locator('[name="description"]').fill('Created by the console browser test');
  await form.locator('[name="config.timeframe.type"]').selectOption('daily');
  await form.locator('[name="config.timeframe.timezone"]').fill('UTC');
  await form.locator('[name="config.timeframe.reset_time"]').fill('00:00');
  await form.locator('[name="config.scoring.rules[0].event_type"]').fill('match.completed');
  await form.locator('[name="config.scoring.rules[0].points_expression"]').fill('attrs.score');
  await form.locator('[name="config.scoring.aggregation"]').selectOption('sum');
  await form.locator('[name="config.ranking.size"]').fill('0');
  await page.click('#lb-create-submit');

  const fieldError = page.locator('.field-error[data-field="config.ranking.size"]');
  await visible(fieldError, 'the field error under config.ranking.size');
  if (!(await fieldError.textContent()).trim()) fail('the config.ranking.size field error is empty');
  await shot(page, '03-validation-error.png');

  await form.locator('[name="config.ranking.size"]').fill('100');
  await page.click('#lb-create-submit');
  await visible(page.locator(`#lb-table tr[data-tenant="${env.TENANT_ID}"][data-id="${LB_ID}"]`), `${LB_ID} in the leaderboard list`);
  if (await fieldError.count()) fail('the field error is still shown after a successful create');
  await shot(page, '04-created.png');
}

async function live_view_moves(page) {
  await page.click(`#lb-table tr[data-tenant="${env.TENANT_ID}"][data-id="${LB_ID}"] a.lb-open`);
  await viewSettled(page, 'leaderboard');
  await waitForText(page, '#live-status', 'live', 'the connection status pill');
  await page.evaluate(() => { window.__consoleTestMarker = 'no-reload'; });

  await postScore('alice', 50);
  await postScore('bob', 80);
  await waitForText(page, rankCell('bob'), '1', 'bob after scoring 80');
  await waitForText(page, rankCell('alice'), '2', 'alice after scoring 50');

  await postScore('carol', 200);
  await waitForText(page, rankCell('carol'), '1', 'carol after scoring 200');
  await waitForText(page, rankCell('bob'), '2', 'bob after carol overtook him');
  await waitForText(page, rankCell('alice'), '3', 'alice after carol overtook her');
  await waitForText(page, '#live-table tr[data-user="carol"] td.score', '200', "carol's score");
  if ((await page.evaluate(() => window.__consoleTestMarker)) !== 'no-reload') fail('the page reloaded during the live update');
  await shot(page, '05-live.png');
}

async function tenant_secret_shown_once(page) {
  await page.click('a[href="#/tenants"]');
  await viewSettled(page, 'tenants');
  await page.click('#tenant-new');
  const form = page.locator('#tenant-form');
  await visible(form, 'the new-tenant form');
  await form.locator('input[name="tenant_id"]').fill('t-made-in-console');
  await form.locator('input[name="name"]').fill('Made in the console');
  await page.click('#tenant-create-submit');
  const secret = page.locator('#secret-value');
  await visible(secret, 'the new HMAC secret');
  const value = (await secret.textContent()).trim();
  if (!/^[0-9a-f]{64}$/.test(value)) fail(`the HMAC secret shown is not 64 hex characters: "${value}"`);
  await visible(page.locator('#tenants-table tr[data-tenant="t-made-in-console"]'), 'the new tenant in the table');
  await shot(page, '07-tenant-secret.png');
  // Shown once: a fresh visit of the page no longer has it.
  await page.click('a[href="#/leaderboards"]');
  await viewSettled(page, 'leaderboards');
  await page.click('a[href="#/tenants"]');
  await viewSettled(page, 'tenants');
  if (await page.locator('#secret-value').count()) fail('the HMAC secret is shown again');
  if ((await page.content()).includes(value)) fail('the HMAC secret is still in the page');
}

async function tenant_settings_with_a_field_error_first(page) {
  await page.click('a[href="#/tenants"]');
  await viewSettled(page, 'tenants');
  await page.click('#tenant-settings-t-made-in-console');
  const form = page.locator('#tenant-settings-form');
  await visible(form, 'the tenant settings form');
  await form.locator('select[name="unscoped_tokens"]').selectOption('deny');
  await form.locator('input[name="rate_limits.events_per_second"]').fill('lots');
  await page.click('#tenant-settings-submit');
  await visible(form.locator('.field[data-for="rate_limits.events_per_second"] .field-error'), 'the error under the events limit');
  await shot(page, '07b-tenant-settings-error.png');
  await form.locator('input[name="rate_limits.events_per_second"]').fill('500');
  await form.locator('input[name="rate_limits.player_requests_per_second"]').fill('0');
  await page.click('#tenant-settings-submit');
  const row = page.locator('#tenants-table tr[data-tenant="t-made-in-console"]');
  await visible(row.locator('.badge', { hasText: 'refused' }), 'unscoped tokens refused');
  await visible(row.locator('.rate-limits', { hasText: 'events 500/s' }), 'the events limit');
  await shot(page, '07c-tenant-settings-saved.png');
}

async function api_key_shown_once_then_revoked(page) {
  await page.click('a[href="#/keys"]');
  await viewSettled(page, 'keys');
  await page.click('#key-new');
  const form = page.locator('#key-form');
  await visible(form, 'the new-key form');
  await form.locator('input[name="name"]').fill('console-test-key');
  await form.locator('input[name="scopes"][value="leaderboards:read"]').check();
  await page.click('#key-create-submit');
  const secret = page.locator('#secret-value');
  await visible(secret, 'the new API key');
  const key = (await secret.textContent()).trim();
  if (!/^pk_[A-Za-z0-9_-]{32,}$/.test(key)) fail(`the key shown does not look like an API key: "${key}"`);
  // The key works: it reads leaderboards.
  const probe = await fetch(`${BASE}/leaderboards`, { headers: { 'X-API-Key': key } });
  if (probe.status !== 200) fail(`the new key was refused with ${probe.status}`);
  const row = page.locator('#keys-table tr[data-key]', { hasText: 'console-test-key' });
  await visible(row, 'the new key in the table');
  await shot(page, '09-api-key.png');
  await row.locator('button', { hasText: 'Revoke' }).click();
  await page.locator('dialog.modal button', { hasText: 'Revoke key' }).click();
  await visible(row.locator('text=revoked'), 'the key marked revoked');
  const after = await fetch(`${BASE}/leaderboards`, { headers: { 'X-API-Key': key } });
  if (after.status !== 401) fail(`the revoked key still answers ${after.status}`);
  // Shown once: a fresh visit of the page no longer has it.
  await page.click('a[href="#/tenants"]');
  await viewSettled(page, 'tenants');
  await page.click('a[href="#/keys"]');
  await viewSettled(page, 'keys');
  if ((await page.content()).includes(key)) fail('the API key is shown again');
}

async function admin_manages_users(page) {
  await page.click('a[href="#/users"]');
  await viewSettled(page, 'users');
  await visible(page.locator(`#users-table tr[data-username="${env.VIEWER_USER}"]`), 'the VIEWER in the users table');
  await page.click('#user-new');
  const form = page.locator('#user-form');
  await form.locator('input[name="username"]').fill('made-in-console');
  await form.locator('input[name="password"]').fill('short');
  await page.click('#user-create-submit');
  await visible(page.locator('#user-form .field-error, #user-form .form-summary:not([hidden])'), 'the password error');
  await form.locator('input[name="password"]').fill('a long enough password');
  await page.click('#user-create-submit');
  await visible(page.locator('#users-table tr[data-username="made-in-console"]'), 'the new user in the table');
  await shot(page, '10-users.png');
}

/** PAST_LEADERBOARD's only window was open for a few seconds while the harness posted scores. */
async function past_window_shows_final_standings(page) {
  const board = process.env.PAST_LEADERBOARD;
  if (!board) fail('PAST_LEADERBOARD is not set');
  await page.goto(`${BASE}/console#/leaderboards/${env.TENANT_ID}/${board}`);
  await viewSettled(page, 'leaderboard');
  // The window may still be closing when the page opens: look again until it is listed.
  const row = page.locator('#windows-table tr[data-window]');
  const deadline = Date.now() + TIMEOUT;
  while (!(await row.count())) {
    if (Date.now() > deadline) fail('the ended window never showed under Past windows');
    await page.waitForTimeout(250);
    await page.reload();
    await viewSettled(page, 'leaderboard');
  }
  await row.first().locator('a.window-link').click();
  await waitForText(page, '#window-entries tr[data-user="ann"] td.rank', '1', 'ann in the final standings');
  await visible(page.locator('#window-entries tr[data-user="ben"]'), 'ben in the final standings');
  await shot(page, '08-past-window.png');
}

/** REWARD_LEADERBOARD has scored players in its open window (pia 300, quinn 200, rex 100). */
async function admin_creates_a_reward_rule_and_sees_its_preview(page) {
  const board = process.env.REWARD_LEADERBOARD;
  if (!board) fail('REWARD_LEADERBOARD is not set');
  await openTenantPage(page, 'rewards');
  await page.click('#rule-new');
  const form = page.locator('#rule-form');
  await visible(form, 'the reward rule form');
  const example = JSON.parse(await form.locator('[name="tiers"]').inputValue());
  if (!Array.isArray(example) || !example.length) fail('the tiers are not prefilled with an example');
  await form.locator('[name="rule_id"]').fill('console-podium');
  await form.locator('[name="leaderboard_id"]').selectOption(board);
  await form.locator('[name="name"]').fill('Console podium');
  // Ranks that run backwards: the server's message shows under the tiers.
  await form.locator('[name="tiers"]').fill(JSON.stringify([
    { rank_from: 3, rank_to: 1, rewards: [{ type: 'currency', currency: 'gems', amount: 5 }] }]));
  await page.click('#rule-create-submit');
  const fieldError = page.locator('.field-error[data-field="tiers"]');
  await visible(fieldError, 'the error under the tiers');
  if (!/rank/.test(await fieldError.textContent())) fail(`the tiers error does not say what is wrong: ${await fieldError.textContent()}`);
  await shot(page, '11-rule-validation-error.png');

  await form.locator('[name="tiers"]').fill(JSON.stringify([
    { rank_from: 1, rank_to: 1, rewards: [{ type: 'currency', currency: 'gems', amount: 500 }, { type: 'badge', badge: 'champion' }] },
    { rank_from: 2, rank_to: 2, rewards: [{ type: 'item', item: 'chest_gold', quantity: 1 }] }], null, 2));
  await page.click('#rule-create-submit');
  const row = page.locator('#rules-table tr[data-rule="console-podium"]');
  await visible(row, 'the new rule in the rules table');
  if (await fieldError.count()) fail('the tiers error is still shown after a successful create');
  await shot(page, '12-rule-created.png');

  await row.locator('a.rule-open').click();
  await viewSettled(page, 'rule');
  await visible(page.locator('#tiers-table'), "the rule's tiers");
  await waitForText(page, '#preview-table tr[data-user="pia"] td.rank', '1', 'pia in the preview');
  await waitForText(page, '#preview-table tr[data-user="quinn"] td.rank', '2', 'quinn in the preview');
  if ((await page.locator('#preview-table tr[data-user="pia"]').count()) !== 2) fail('pia should get two rewards in the preview');
  if (await page.locator('#preview-table tr[data-user="rex"]').count()) fail('rex (rank 3) is in the preview');
  await visible(page.locator('#settle-form'), 'the settle control for an ADMIN');
  await shot(page, '13-rule-preview.png');
}

async function admin_generates_personal_codes_and_voids_one(page) {
  await openTenantPage(page, 'coupons');
  await page.click('#campaign-new');
  const form = page.locator('#campaign-form');
  await visible(form, 'the campaign form');
  await form.locator('[name="campaign_id"]').fill('console-vip');
  await form.locator('[name="name"]').fill('Console VIP');
  await page.click('#campaign-create-submit');
  const row = page.locator('#campaigns-table tr[data-campaign="console-vip"]');
  await visible(row, 'the new campaign in the campaigns table');
  await row.locator('a.campaign-open').click();
  await viewSettled(page, 'campaign');

  await page.click('#codes-new');
  await page.locator('#codes-form [name="count"]').fill('3');
  await page.click('#codes-generate-submit');
  const fresh = page.locator('#new-codes-list li');
  await visible(fresh, 'the new codes');
  const codes = (await fresh.allTextContents()).map((t) => t.trim());
  if (codes.length !== 3 || !codes.every((c) => /^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$/.test(c))) fail(`unexpected new codes: ${codes.join(', ')}`);
  for (const code of codes) await visible(page.locator(`#codes-table tr[data-code="${code}"][data-state="available"]`), `code ${code} in the codes list`);
  await shot(page, '14-codes.png');

  await page.locator(`#codes-table tr[data-code="${codes[0]}"] button`, { hasText: 'Void' }).click();
  await page.fill('#reason-input', 'Leaked in a forum');
  await page.click('#reason-submit');
  await visible(page.locator(`#codes-table tr[data-code="${codes[0]}"][data-state="voided"]`), 'the voided code');
  await visible(page.locator(`#codes-table tr[data-code="${codes[1]}"][data-state="available"]`), 'the other codes untouched');
}

/** The short window's rule settled it before the browser started: GRANT_USER has pending grants. */
async function admin_voids_a_grant(page) {
  const user = process.env.GRANT_USER;
  if (!user) fail('GRANT_USER is not set');
  await openTenantPage(page, 'rewards');
  await page.fill('#grants-user', user);
  await page.click('#grants-lookup-submit');
  await grantsListed(page, `of ${user}`);
  const row = page.locator(`#grants-table tr[data-user="${user}"][data-status="pending"]`).first();
  await visible(row, `a pending grant of ${user}`);
  const grant = await row.getAttribute('data-grant');
  await row.locator('button', { hasText: 'Void' }).click();
  await page.click('#reason-submit'); // without a reason: the server asks for one
  await visible(page.locator('dialog.modal .field-error[data-field="reason"]'), 'the reason error');
  await page.fill('#reason-input', 'Console test: cheating');
  await page.click('#reason-submit');
  const voided = page.locator(`#grants-table tr[data-grant="${grant}"][data-status="voided"]`);
  await visible(voided, 'the grant marked voided');
  await visible(voided.locator('.badge', { hasText: 'voided' }), 'the voided badge');
  if (await voided.locator('button', { hasText: 'Void' }).count()) fail('a voided grant still offers Void');
  await shot(page, '15-grant-voided.png');

  // Its rule's page: the settlement the rule made, and settling by hand (an unknown window is an error
  // under the field; the settled one again changes nothing).
  await voided.locator('a', { hasText: 'short-podium' }).click();
  await viewSettled(page, 'rule');
  const settled = page.locator('#settlements-table tr[data-window]');
  await visible(settled, 'the settlement of the short window');
  const windowId = await settled.first().getAttribute('data-window');
  await page.fill('#settle-window', 'no-such-window');
  await page.click('#settle-submit');
  await visible(page.locator('#settle-form .field-error[data-field="window_id"]'), 'the error under the window id');
  await page.fill('#settle-window', windowId);
  await page.click('#settle-submit');
  await visible(page.locator('.toast', { hasText: `Window ${windowId} was already settled` }), 'the already-settled answer');
  if ((await settled.count()) !== 1) fail('settling the same window again made another settlement');
}

// The webhook and the achievement the next steps make, and what they need from each other.
const HOOK = { id: null, secret: null };
const ACHIEVEMENT = 'console-wins';
const WIN = 'console.win';

/** A webhook to the receiver, for achievement.completed: a URL error under its field first, then the secret once. */
async function admin_creates_a_webhook_and_sees_its_secret_once(page) {
  await startReceiver();
  await openTenantPage(page, 'webhooks');
  await page.click('#webhook-new');
  const form = page.locator('#webhook-form');
  await visible(form, 'the webhook form');
  await form.locator('[name="url"]').fill('ftp://example.com/hook');
  await form.locator('input[name="events"][value="achievement.completed"]').check();
  await form.locator('[name="description"]').fill('Console receiver');
  await page.click('#webhook-create-submit');
  await visible(page.locator('#webhook-form .field-error[data-field="url"]'), 'the error under the URL');
  await form.locator('[name="url"]').fill(receiver.url);
  await page.click('#webhook-create-submit');
  const secret = page.locator('#secret-value');
  await visible(secret, 'the webhook secret');
  HOOK.secret = (await secret.textContent()).trim();
  if (!/^whsec_[A-Za-z0-9+/]+=*$/.test(HOOK.secret)) fail(`the webhook secret shown is not whsec_ and base64: "${HOOK.secret}"`);
  const row = page.locator(`#webhooks-table tr[data-url="${receiver.url}"]`);
  await visible(row, 'the new webhook in the table');
  HOOK.id = await row.getAttribute('data-webhook');
  await visible(row.locator('.badge', { hasText: 'active' }), 'the new webhook active');
  await visible(row.locator('.badge', { hasText: 'achievement.completed' }), 'its event type');
  if (await page.locator('#webhook-form .field-error').count()) fail('the URL error is still shown after a successful create');
  await shot(page, '18-webhook-secret.png');
  // Shown once: a fresh visit of the page no longer has it.
  await openTenantPage(page, 'coupons');
  await openTenantPage(page, 'webhooks');
  await visible(row, 'the webhook after coming back');
  if (await page.locator('#secret-value').count()) fail('the webhook secret is shown again');
  if ((await page.content()).includes(HOOK.secret)) fail('the webhook secret is still in the page');
}

/** An achievement on WIN events with two steps; a player's first win shows in the step's completion count. */
async function admin_creates_an_achievement_and_sees_its_completions(page) {
  await openTenantPage(page, 'achievements');
  await page.click('#achievement-new');
  const form = page.locator('#achievement-form');
  await visible(form, 'the achievement form');
  const example = JSON.parse(await form.locator('[name="steps"]').inputValue());
  if (!Array.isArray(example) || !example.length) fail('the steps are not prefilled with an example');
  await form.locator('[name="achievement_id"]').fill(ACHIEVEMENT);
  await form.locator('[name="name"]').fill('Console wins');
  await form.locator('[name="metric.event_type"]').fill(WIN);
  // Thresholds that fall: the server's message shows under the steps.
  await form.locator('[name="steps"]').fill(JSON.stringify([{ threshold: 2 }, { threshold: 1 }]));
  await page.click('#achievement-create-submit');
  const fieldError = page.locator('.field-error[data-field="steps"]');
  await visible(fieldError, 'the error under the steps');
  if (!/threshold/.test(await fieldError.textContent())) fail(`the steps error does not say what is wrong: ${await fieldError.textContent()}`);
  await shot(page, '19-achievement-validation-error.png');

  await form.locator('[name="steps"]').fill(JSON.stringify([
    { threshold: 1, rewards: [{ type: 'badge', badge: 'first-win' }] }, { threshold: 2, rewards: [] }], null, 2));
  await page.click('#achievement-create-submit');
  const row = page.locator(`#achievements-table tr[data-achievement="${ACHIEVEMENT}"]`);
  await visible(row, 'the new achievement in the table');
  if (await fieldError.count()) fail('the steps error is still shown after a successful create');
  await waitForText(page, `#achievements-table tr[data-achievement="${ACHIEVEMENT}"] li[data-step="0"] .step-players`, '0 players', 'step 1 before anyone won');
  await waitForText(page, `#achievements-table tr[data-achievement="${ACHIEVEMENT}"] li[data-step="1"] .step-players`, '0 players', 'step 2 before anyone won');

  // dana's first win completes step 1 (and tells the webhook).
  await postEvent(WIN, 'dana', {});
  await untilShown(page, row.locator('li[data-step="0"] .step-players[data-players="1"]'), () => page.click('#achievements-refresh'), 'dana completing step 1');
  await waitForText(page, `#achievements-table tr[data-achievement="${ACHIEVEMENT}"] li[data-step="1"] .step-players`, '0 players', 'step 2 after one win');
  await shot(page, '20-achievement-completions.png');

  // Its page: the steps with their counts; a step added above the last (one that is not above it first).
  await row.locator('a.achievement-open').click();
  await viewSettled(page, 'achievement');
  await visible(page.locator('#steps-table tr[data-step="0"][data-players="1"]'), 'step 1 completed by one player');
  await page.click('#step-new');
  await page.locator('#step-form [name="threshold"]').fill('2');
  await page.click('#step-add-submit');
  await visible(page.locator('#step-form .field-error[data-field="threshold"]'), 'the error under the new threshold');
  await page.locator('#step-form [name="threshold"]').fill('5');
  await page.click('#step-add-submit');
  await visible(page.locator('#steps-table tr[data-step="2"][data-threshold="5"]'), 'the new step');
  await visible(page.locator('#steps-table tr[data-step="0"][data-players="1"]'), 'step 1 still completed after adding a step');
  // Edit: a new name, hidden from players until they complete a step.
  await page.click('#achievement-edit');
  const edit = page.locator('#achievement-edit-form');
  await edit.locator('[name="name"]').fill('Console winner');
  await edit.locator('[name="hidden"]').check();
  await page.click('#achievement-save-submit');
  await visible(page.locator('h1', { hasText: 'Console winner' }), 'the new name');
  await visible(page.locator('h1 .badge', { hasText: 'hidden' }), 'the hidden badge');
  await shot(page, '21-achievement.png');
}

/**
 * dana's first win reached the receiver: the delivery is in the log, signed. Then the receiver answers
 * 410 to her second win, so the server disables the webhook and says why; enabled again, the waiting
 * message is delivered. Rotating shows the new secret once.
 */
async function webhook_delivery_shows_in_its_log(page) {
  if (!HOOK.id) fail('no webhook was created');
  await openTenantPage(page, 'webhooks');
  await page.locator(`#webhooks-table tr[data-webhook="${HOOK.id}"] a.webhook-open`).click();
  await viewSettled(page, 'webhook');
  const refresh = () => page.click('#deliveries-refresh');
  const delivered = page.locator('#deliveries-table tr[data-event="achievement.completed"][data-state="delivered"][data-status-code="200"]');
  await untilShown(page, delivered, refresh, 'the delivered achievement.completed');
  const messageId = await delivered.first().getAttribute('data-delivery');
  const got = receiver.got.filter((r) => r.id === messageId);
  if (got.length !== 1) fail(`the receiver got message ${messageId} ${got.length} times`);
  if (!signedBy(got[0], HOOK.secret)) fail(`message ${messageId} is not signed with the secret shown`);
  const body = JSON.parse(got[0].body);
  if (body.type !== 'achievement.completed' || body.data.achievement_id !== ACHIEVEMENT || body.data.user_id !== 'dana') fail(`unexpected message: ${got[0].body}`);
  await shot(page, '22-webhook-deliveries.png');

  receiver.status = 410;
  await postEvent(WIN, 'dana', {});
  const reason = page.locator('#webhook-disabled-reason');
  await untilShown(page, reason, async () => { await page.reload(); await viewSettled(page, 'webhook'); }, 'the webhook disabled after a 410');
  await visible(page.locator('h1 .badge', { hasText: 'disabled' }), 'the disabled badge');
  await visible(page.locator('#deliveries-table tr[data-status-code="410"][data-state="pending"]'), 'the 410 attempt, its message waiting');
  await shot(page, '23-webhook-disabled.png');

  receiver.status = 200;
  await page.click('#webhook-enable');
  await visible(page.locator('h1 .badge', { hasText: 'active' }), 'the webhook active again');
  if (await reason.count()) fail('the disabled reason is still shown after enabling');
  const retried = page.locator('#deliveries-table tr[data-state="delivered"][data-status-code="200"]');
  await untilShown(page, retried.nth(1), refresh, 'the waiting message delivered after enabling');
  if (await page.locator('#deliveries-table tr[data-state="pending"]').count()) fail('a message is still pending after enabling');

  await page.click('#webhook-rotate');
  await page.locator('dialog.modal button', { hasText: 'Rotate secret' }).click();
  const secret = page.locator('#secret-value');
  await visible(secret, 'the new webhook secret');
  const rotated = (await secret.textContent()).trim();
  if (!rotated.startsWith('whsec_') || rotated === HOOK.secret) fail(`the rotated secret is not a new whsec_ secret: "${rotated}"`);
  await page.reload();
  await viewSettled(page, 'webhook');
  if ((await page.content()).includes(rotated)) fail('the rotated secret is shown again');
}

async function viewer_sees_no_write_controls(page) {
  await page.click('#logout');
  await logIn(page, env.VIEWER_USER, env.VIEWER_PASSWORD);
  await expectSignedIn(page, 'the VIEWER');
  await viewSettled(page, 'tenants');
  await visible(page.locator(`#tenants-table tr[data-tenant="${env.TENANT_ID}"]`), `tenant ${env.TENANT_ID} for the VIEWER`);
  await assertNoWriteControls(page, 'tenants page');

  if (await page.locator('a[href="#/keys"]').count()) {
    await page.click('a[href="#/keys"]');
    await viewSettled(page, 'keys');
    await assertNoWriteControls(page, 'API keys page');
  }

  await page.click('a[href="#/leaderboards"]');
  await viewSettled(page, 'leaderboards');
  await visible(page.locator(`#lb-table tr[data-id="${LB_ID}"]`), `${LB_ID} for the VIEWER`);
  await assertNoWriteControls(page, 'leaderboards page');

  await page.click(`#lb-table tr[data-tenant="${env.TENANT_ID}"][data-id="${LB_ID}"] a.lb-open`);
  await viewSettled(page, 'leaderboard');
  await waitForText(page, '#live-status', 'live', 'the VIEWER live view');
  await assertNoWriteControls(page, 'leaderboard page');
  await shot(page, '06-viewer.png');

  // Rewards and coupons: everything readable, nothing to change.
  await openTenantPage(page, 'rewards');
  await visible(page.locator('#rules-table tr[data-rule="console-podium"]'), 'the reward rule for the VIEWER');
  await visible(page.locator('#grants-table tr[data-grant]'), 'grants for the VIEWER');
  await assertNoWriteControls(page, 'rewards page');
  await page.locator('#rules-table tr[data-rule="console-podium"] a.rule-open').click();
  await viewSettled(page, 'rule');
  await visible(page.locator('#preview-table tr[data-user="pia"]'), 'the preview for the VIEWER');
  await visible(page.locator('#settlements'), 'the settlements for the VIEWER');
  if (await page.locator('#settle-form').count()) fail('the settle control is shown to a VIEWER');
  await assertNoWriteControls(page, 'reward rule page');
  await shot(page, '16-viewer-rule.png');

  await openTenantPage(page, 'coupons');
  await visible(page.locator('#campaigns-table tr[data-campaign="console-vip"]'), 'the campaign for the VIEWER');
  await assertNoWriteControls(page, 'coupons page');
  await page.locator('#campaigns-table tr[data-campaign="console-vip"] a.campaign-open').click();
  await viewSettled(page, 'campaign');
  await visible(page.locator('#codes-table tr[data-code]'), 'the codes for the VIEWER');
  await assertNoWriteControls(page, 'campaign page');
  await shot(page, '17-viewer-campaign.png');

  // Achievements and webhooks: the completion counts and the deliveries log, nothing to change.
  await openTenantPage(page, 'achievements');
  const achievement = page.locator(`#achievements-table tr[data-achievement="${ACHIEVEMENT}"]`);
  await visible(achievement.locator('li[data-step="0"] .step-players[data-players="1"]'), 'the completion counts for the VIEWER');
  await assertNoWriteControls(page, 'achievements page');
  await achievement.locator('a.achievement-open').click();
  await viewSettled(page, 'achievement');
  await visible(page.locator('#steps-table tr[data-step="1"][data-players="1"]'), 'the steps for the VIEWER');
  await assertNoWriteControls(page, 'achievement page');

  await openTenantPage(page, 'webhooks');
  await visible(page.locator(`#webhooks-table tr[data-webhook="${HOOK.id}"]`), 'the webhook for the VIEWER');
  await assertNoWriteControls(page, 'webhooks page');
  await page.locator(`#webhooks-table tr[data-webhook="${HOOK.id}"] a.webhook-open`).click();
  await viewSettled(page, 'webhook');
  await visible(page.locator('#deliveries-table tr[data-state="delivered"]'), 'the deliveries for the VIEWER');
  await assertNoWriteControls(page, 'webhook page');
  await shot(page, '24-viewer-webhook.png');
}

async function dev_mode_skips_sign_in(page) {
  await page.goto(`${BASE}/console`);
  await viewSettled(page, 'tenants');
  if (await page.locator('#login-form').count()) fail('the login form is shown in development mode');
  if (await page.locator('#logout').count()) fail('a Log out button is shown in development mode');
  await visible(page.locator(`#tenants-table tr[data-tenant="${env.TENANT_ID}"]`), `tenant ${env.TENANT_ID}`);
  await visible(page.locator('text=dev mode'), 'the dev mode badge');
  // Writes work without credentials.
  await page.click('#tenant-new');
  await page.locator('#tenant-form input[name="tenant_id"]').fill('t-dev-console');
  await page.locator('#tenant-form input[name="name"]').fill('Dev');
  await page.click('#tenant-create-submit');
  await visible(page.locator('#tenants-table tr[data-tenant="t-dev-console"]'), 'the tenant made in development mode');
  await shot(page, 'dev-01-no-sign-in.png');
}

const STEPS = DEV_MODE ? [dev_mode_skips_sign_in] : [
  login_rejects_wrong_password,
  admin_logs_in,
  create_leaderboard_shows_field_error_first,
  live_view_moves,
  tenant_secret_shown_once,
  tenant_settings_with_a_field_error_first,
  api_key_shown_once_then_revoked,
  admin_manages_users,
  past_window_shows_final_standings,
  admin_creates_a_reward_rule_and_sees_its_preview,
  admin_generates_personal_codes_and_voids_one,
  admin_voids_a_grant,
  admin_creates_a_webhook_and_sees_its_secret_once,
  admin_creates_an_achievement_and_sees_its_completions,
  webhook_delivery_shows_in_its_log,
  viewer_sees_no_write_controls,
];

// ------------------------------------------------------------------ runner
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const consoleErrors = [];
  page.on('pageerror', (err) => consoleErrors.push(err.message));
  for (const step of STEPS) {
    try {
      await step(page);
      console.log(`ok - ${step.name}`);
    } catch (err) {
      failed += 1;
      console.log(`not ok - ${step.name}: ${String(err && err.message ? err.message : err).split('\n')[0]}`);
      await shot(page, `fail-${step.name}.png`).catch(() => {});
    }
  }
  if (consoleErrors.length) {
    failed += 1;
    console.log(`not ok - no_script_errors: ${consoleErrors.join(' | ')}`);
  } else {
    console.log('ok - no_script_errors');
  }
} finally {
  await browser.close();
  receiver.server?.close();
}
process.exit(failed ? 1 : 0);
