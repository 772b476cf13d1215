// Current round: per-site phase (downloading → evaluating → training → uploading → done), with
// separate bars for local steps, the checkpoint download and the update upload, and the time
// left to the deadline.
import { h, setChildren, table } from './dom.js';
import * as fmt from './format.js';

const STATES = ['downloading', 'evaluating', 'training', 'uploading', 'done', 'late', 'failed'];

function bar(done, total, text, label) {
  const pct = fmt.percent(done, total);
  return h(
    'div',
    { class: 'progress' },
    h(
      'div',
      { class: 'bar', role: 'progressbar', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(pct) },
      h('div', { class: 'fill', style: { width: `${pct}%` } }),
    ),
    h('span', { class: 'progress-text' }, text),
  );
}

/** Bytes moved of a transfer; an em dash until its size is known (not started). */
function transferBar(done, total, label) {
  const known = typeof total === 'number' && total > 0;
  return bar(known ? done : 0, known ? total : 0, known ? `${fmt.bytes(done)} / ${fmt.bytes(total)}` : '—', label);
}

/** @param {HTMLElement} el */
export function renderCurrentRound(el, snapshot) {
  const round = snapshot.currentRound;
  if (!round) {
    const done = snapshot.rounds.length;
    setChildren(el, h('p', { class: 'muted' }, done >= snapshot.experiment.rounds ? 'Experiment finished.' : 'No round in progress.'));
    return;
  }
  const counts = STATES.map((s) => [s, round.sites.filter((x) => x.state === s).length]).filter(([, n]) => n > 0);
  const tableEl = h('table', { class: 'data round-table' });
  table(
    tableEl,
    ['Site', 'State', 'Steps', 'Checkpoint ↓', 'Update ↑'],
    round.sites.map((s) =>
      h(
        'tr',
        { dataset: { site: s.id, state: s.state } },
        h('th', { scope: 'row', class: 'site-id' }, s.id),
        h('td', null, h('span', { class: 'state', dataset: { state: s.state } }, s.state)),
        h('td', null, bar(s.stepsDone, s.stepsTotal, `${s.stepsDone} / ${s.stepsTotal}`, `${s.id} steps`)),
        h('td', null, transferBar(s.downloadedBytes, s.downloadTotalBytes, `${s.id} checkpoint download`)),
        h('td', null, transferBar(s.bytesTransferred, s.bytesTotal, `${s.id} update upload`)),
      ),
    ),
  );
  setChildren(
    el,
    h(
      'div',
      { class: 'round-head' },
      h('p', { class: 'round-title' }, `Round ${round.round}`, round.attempt > 1 ? ` (attempt ${round.attempt})` : '', ` of ${snapshot.experiment.rounds}`),
      h('p', { class: 'deadline' }, 'Deadline: ', h('strong', { id: 'deadline-left', dataset: { deadline: round.deadline } }, ''), h('span', { class: 'muted' }, ` (${fmt.time(round.deadline)})`)),
    ),
    h('p', { class: 'round-counts' }, counts.map(([s, n], i) => [i ? ' · ' : '', h('span', { class: 'state', dataset: { state: s } }, `${n} ${s}`)])),
    h('div', { class: 'table-scroll' }, tableEl),
  );
}
