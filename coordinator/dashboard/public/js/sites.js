// Sites table: one row per enrolled site.
import { h, table } from './dom.js';
import * as fmt from './format.js';

function backendText(site) {
  if (!site.backend) return site.gpu ? 'GPU' : '—';
  return `${site.gpu ? 'GPU' : 'CPU'} · ${site.backend}`;
}

function lastUpdateCell(update) {
  if (!update) return h('td', null, '—');
  if (update.status === 'accepted') {
    return h('td', { class: 'update-accepted' }, h('span', { class: 'mark', 'aria-hidden': 'true' }, '✓ '), `accepted (round ${update.round})`);
  }
  return h(
    'td',
    { class: 'update-rejected' },
    h('span', { class: 'mark', 'aria-hidden': 'true' }, '✗ '),
    `rejected (round ${update.round})`,
    update.reason ? h('span', { class: 'reason' }, update.reason) : null,
  );
}

/** @param {HTMLTableElement} el */
export function renderSites(el, snapshot) {
  const labels = snapshot.experiment.labels;
  // Two header rows: the per-label Dice columns sit under one "Latest validation Dice" heading.
  const fixed = [['Site'], ['Status'], ['Last seen'], ['Backend'], ['Memory', 'num'], ['Patch', 'num'], ['Batch', 'num'], ['Rounds', 'num'], ['Last update']];
  const headers = h(
    'thead',
    null,
    h(
      'tr',
      null,
      fixed.map(([text, cls]) => h('th', { scope: 'col', rowspan: labels.length ? 2 : null, class: cls }, text)),
      labels.length ? h('th', { scope: 'colgroup', colspan: labels.length, class: 'group' }, 'Latest validation Dice') : null,
    ),
    h('tr', null, labels.map((l) => h('th', { scope: 'col', class: 'num' }, l))),
  );
  const rows = snapshot.sites.map((site) =>
    h(
      'tr',
      { dataset: { site: site.id, online: String(site.online) } },
      h('th', { scope: 'row', class: 'site-id' }, site.id),
      h('td', null, h('span', { class: 'status', dataset: { online: String(site.online) } }, site.online ? 'online' : 'offline')),
      h('td', site.lastSeen ? { dataset: { since: site.lastSeen }, title: fmt.dateTime(site.lastSeen) } : null, site.lastSeen ? '' : 'never'),
      h('td', null, backendText(site)),
      h('td', { class: 'num' }, fmt.memoryMB(site.memoryBudgetMB)),
      h('td', { class: 'num patch' }, fmt.shape(site.patch)),
      h('td', { class: 'num' }, site.batch ?? '—'),
      h('td', { class: 'num' }, site.roundsParticipated),
      lastUpdateCell(site.lastUpdate),
      ...labels.map((l) => h('td', { class: 'num dice' }, fmt.dice(site.dice ? site.dice[l] : null))),
    ),
  );
  const online = snapshot.sites.filter((s) => s.online).length;
  table(el, headers, rows, `${online} of ${snapshot.sites.length} sites online`);
}
