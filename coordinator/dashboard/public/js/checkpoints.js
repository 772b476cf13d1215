// Checkpoints table with token-protected download links (the session cookie authorises them).
import { h, table, th } from './dom.js';
import * as fmt from './format.js';

/** @param {HTMLTableElement} el */
export function renderCheckpoints(el, snapshot) {
  const rows = [...snapshot.checkpoints]
    .sort((a, b) => b.version - a.version)
    .map((c) => {
      const version = Number(c.version);
      return h(
        'tr',
        { dataset: { version: String(version) } },
        h('th', { scope: 'row', class: 'num' }, `v${version}`),
        h('td', { class: 'num' }, c.round),
        h('td', { title: c.createdAt }, fmt.dateTime(c.createdAt)),
        h('td', { class: 'hash' }, h('details', null, h('summary', null, h('code', null, `${String(c.sha256).slice(0, 12)}…`)), h('code', { class: 'full-hash' }, c.sha256))),
        h('td', { class: c.signatureValid ? 'sig-valid' : 'sig-invalid' }, c.signatureValid ? '✓ valid' : '✗ INVALID'),
        h('td', { class: 'num' }, fmt.bytes(c.sizeBytes)),
        h('td', null, Number.isSafeInteger(version) ? h('a', { href: `/api/checkpoints/${version}/download`, download: '' }, 'Download') : '—'),
      );
    });
  const headers = [th('Version', 'num'), th('Round', 'num'), th('Created'), th('SHA-256'), th('Signature'), th('Size', 'num'), th('Model artifacts')];
  table(el, headers, rows.length ? rows : [h('tr', null, h('td', { colspan: 7, class: 'muted' }, 'No checkpoint yet.'))]);
}
