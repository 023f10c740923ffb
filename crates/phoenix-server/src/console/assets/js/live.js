/*
 * Live standings over the WebSocket: a keyed table that moves rows as updates arrive, reconnecting
 * with backoff and saying why a connection closed.
 */
import { api } from './api.js';
import { el, enc, fmtClock, fmtScore, mono, timeEl } from './ui.js';

const LIVE_TOP = 25;

const CLOSE_REASONS = {
  1000: 'The connection was closed.', 1001: 'The server is shutting down or restarting.',
  1006: 'The connection was lost.', 1011: 'The server hit an error.',
  1013: 'The server closed the connection because updates could not be delivered fast enough.',
  4404: 'This leaderboard was deactivated, so live updates stopped.',
  4410: 'This leaderboard was deleted, so live updates stopped.',
};

export function liveSection() {
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
export function startLive(tenant, id, ui, onWindowClosed) {
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
