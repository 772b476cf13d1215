// Dashboard page: fetch the snapshot, render it, then follow live pushes on /dashboard.
// Read-only: the page never sends anything that changes training.
import { h, setChildren } from './dom.js';
import * as fmt from './format.js';
import { renderSites } from './sites.js';
import { renderCurrentRound } from './current-round.js';
import { renderExperiment } from './experiment.js';
import { renderCheckpoints } from './checkpoints.js';
import { renderCrossSite } from './cross-site.js';
import { eventKey, mergeEvents, renderEvents } from './events.js';
import { HistoryCharts } from './charts.js';

const $ = (id) => document.getElementById(id);

const state = {
  snapshot: null,
  /** serverTime − local clock, so countdowns follow the coordinator's clock. */
  clockOffsetMs: 0,
  liveEvents: [],
  events: [],
  renderPending: false,
  renderedOnce: false,
};

const charts = new HistoryCharts($('charts'));

function serverNow() {
  return Date.now() + state.clockOffsetMs;
}

function applySnapshot(payload) {
  state.snapshot = payload;
  const t = Date.parse(payload.serverTime);
  if (Number.isFinite(t)) state.clockOffsetMs = t - Date.now();
  state.events = mergeEvents(payload.events ?? [], state.liveEvents);
  // Live events already in the snapshot need not be remembered any longer.
  const known = new Set((payload.events ?? []).map(eventKey));
  state.liveEvents = state.liveEvents.filter((e) => !known.has(eventKey(e)));
  // The first snapshot renders at once (waiting for an animation frame only delays the page);
  // later pushes coalesce into one render per frame.
  if (state.renderedOnce) scheduleRender();
  else render();
}

function applyEvent(event) {
  if (!event || typeof event.time !== 'string' || typeof event.message !== 'string') return;
  state.liveEvents.push(event);
  state.events = mergeEvents(state.snapshot?.events ?? [], state.liveEvents);
  renderEvents($('event-log'), state.events);
}

function scheduleRender() {
  if (state.renderPending) return;
  state.renderPending = true;
  requestAnimationFrame(() => {
    state.renderPending = false;
    render();
  });
}

/** Storage / state DB trouble (disk full, I/O errors): a banner until the coordinator recovers. */
function renderHealth(el, health) {
  const problems = health && !health.ok ? health.problems ?? [] : [];
  el.hidden = problems.length === 0;
  el.textContent = problems.length === 0 ? '' : `Coordinator unhealthy: ${problems.map((p) => `${p.message} (since ${p.since})`).join('; ')}`;
}

function render() {
  const s = state.snapshot;
  if (!s) return;
  const e = s.experiment;
  $('experiment-title').textContent = `· ${e.id}`;
  const online = s.sites.filter((x) => x.online).length;
  const roundText = s.currentRound ? `round ${s.currentRound.round} of ${e.rounds} running` : `${s.rounds.length} of ${e.rounds} rounds done`;
  $('summary').textContent = `${e.task} · ${e.mode} · ${e.strategy} · ${roundText} · ${online}/${s.sites.length} sites online`;
  renderHealth($('health-banner'), s.health);
  timed('sites', () => renderSites($('sites-table'), s));
  timed('round', () => renderCurrentRound($('current-round'), s));
  renderExperiment($('experiment'), s);
  timed('checkpoints', () => renderCheckpoints($('checkpoints-table'), s));
  timed('cross-site', () => renderCrossSite($('cross-site-section'), $('cross-site-table'), $('cross-site-note'), s));
  timed('events', () => renderEvents($('event-log'), state.events));
  timed('charts', () => charts.render(s));
  tick();
  if (!state.renderedOnce) {
    state.renderedOnce = true;
    performance.mark('dashboard-rendered');
    document.body.dataset.rendered = 'true';
  }
}

/** The first render is measured (DevTools / tests read the 'render:*' measures). */
function timed(name, fn) {
  if (state.renderedOnce) return fn();
  const start = performance.now();
  fn();
  performance.measure(`render:${name}`, { start, end: performance.now() });
}

/** Once a second: relative "last seen" times and the deadline countdown. */
function tick() {
  const now = serverNow();
  for (const el of document.querySelectorAll('[data-since]')) {
    el.textContent = fmt.relative(now - Date.parse(el.dataset.since));
  }
  const deadline = document.querySelector('[data-deadline]');
  if (deadline) {
    const left = Date.parse(deadline.dataset.deadline) - now;
    deadline.textContent = left >= 0 ? `${fmt.countdown(left)} left` : `overdue by ${fmt.countdown(-left)}`;
    deadline.dataset.overdue = String(left < 0);
  }
}

function setConnection(stateName, text) {
  const el = $('connection');
  el.dataset.state = stateName;
  el.textContent = text;
}

function showError(message, withLoginLink) {
  const el = $('load-error');
  setChildren(el, message, withLoginLink ? [' ', h('a', { href: '/login' }, 'Log in again')] : null);
  el.hidden = false;
}

async function loadSnapshot() {
  const start = performance.now();
  // prefetch.js started the request during page load; fetch here only if it has not run.
  const early = globalThis.__patchfedSnapshot;
  delete globalThis.__patchfedSnapshot;
  const res = await (early ?? fetch('/api/snapshot', { credentials: 'same-origin', cache: 'no-store' }));
  if (res.status === 401) {
    location.assign('/login');
    return;
  }
  if (!res.ok) throw new Error(`snapshot request failed (HTTP ${res.status})`);
  const payload = await res.json();
  performance.measure('snapshot:fetch', { start, end: performance.now() });
  applySnapshot(payload);
}

/** The socket.io client is only needed for live pushes: load it after the first render, not before. */
function loadSocketIo() {
  if (typeof globalThis.io === 'function') return Promise.resolve(globalThis.io);
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = '/assets/vendor/socket.io.min.js';
    script.onload = () => (typeof globalThis.io === 'function' ? resolve(globalThis.io) : reject(new Error('socket.io client did not load')));
    script.onerror = () => reject(new Error('socket.io client did not load'));
    document.head.append(script);
  });
}

async function connectLive() {
  let io;
  try {
    io = await loadSocketIo();
  } catch {
    setConnection('offline', 'Live updates unavailable');
    return;
  }
  // Websocket only: the coordinator accepts no long-polling (one TCP socket per connection keeps
  // what an unauthenticated client can make it buffer bounded; see connection-gate.ts).
  const socket = io('/dashboard', { withCredentials: true, transports: ['websocket'] });
  socket.on('connect', () => {
    setConnection('live', 'Live');
    $('load-error').hidden = true;
  });
  socket.on('disconnect', () => setConnection('offline', 'Disconnected — reconnecting…'));
  socket.on('connect_error', (err) => {
    if (err && err.message === 'unauthorized') {
      setConnection('offline', 'Not authorised');
      showError('Your dashboard session is no longer valid.', true);
      socket.disconnect();
    } else {
      setConnection('offline', 'Coordinator unreachable — retrying…');
    }
  });
  socket.on('snapshot', (json) => {
    try {
      applySnapshot(typeof json === 'string' ? JSON.parse(json) : json);
    } catch (e) {
      console.error('dashboard: bad snapshot push', e);
    }
  });
  socket.on('event', applyEvent);
}

setInterval(tick, 1000);
loadSnapshot()
  .catch((e) => showError(`Could not load the dashboard data: ${e.message}`, false))
  .finally(connectLive);
