/*
 * One leaderboard's page: its definition, live standings and past windows.
 */
import { api } from './api.js';
import { describeScoring, describeTimeframe, lbActions, lbPath } from './leaderboards.js';
import { liveSection, startLive } from './live.js';
import { go, onCleanup, render, setCrumbs } from './router.js';
import { el, enc, isObj, mono, statusBadge } from './ui.js';
import { windowsSection } from './windows.js';

export async function viewLeaderboard(view, tenant, id) {
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
