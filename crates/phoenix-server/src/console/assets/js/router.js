/*
 * Navigation the pages share: go to a route, draw the current one again, the breadcrumbs, and the
 * cleanups run when the page changes, and the addresses of the per-tenant pages (rewards, coupons,
 * achievements, webhooks), which link to each other. main.js owns the route table and hands its
 * renderer over.
 */
import { state } from './state.js';
import { el } from './ui.js';

let drawCurrent = () => {};

/** main.js hands over the function that draws the page of the current hash. */
export function setRenderer(fn) { drawCurrent = fn; }

/** Draws the current route again. */
export const render = () => drawCurrent();

export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

export const onCleanup = (fn) => state.cleanups.push(fn);

export function runCleanups() {
  for (const fn of state.cleanups.splice(0)) { try { fn(); } catch (e) { console.error(e); } }
}

/** parts: [[label, href?], ...] */
export function setCrumbs(parts) {
  document.title = `${parts.map((p) => p[0]).reverse().join(' · ')} · Phoenix`;
  state.shell.crumbs.replaceChildren(...parts.flatMap(([label, href], i) => [
    i ? el('span', { class: 'sep', 'aria-hidden': 'true', text: '/' }) : '',
    href ? el('a', { href, text: label }) : el('span', { class: 'current', text: label }),
  ]));
}

const enc = encodeURIComponent;
export const rulesHref = (t) => `#/rewards/${enc(t)}`;
export const ruleHref = (t, id) => `#/rewards/${enc(t)}/${enc(id)}`;
export const campaignsHref = (t) => `#/coupons/${enc(t)}`;
export const campaignHref = (t, id) => `#/coupons/${enc(t)}/${enc(id)}`;
export const achievementsHref = (t) => `#/achievements/${enc(t)}`;
export const achievementHref = (t, id) => `#/achievements/${enc(t)}/${enc(id)}`;
export const webhooksHref = (t) => `#/webhooks/${enc(t)}`;
export const webhookHref = (t, id) => `#/webhooks/${enc(t)}/${enc(id)}`;
