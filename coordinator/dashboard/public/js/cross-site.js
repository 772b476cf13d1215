// Cross-site validation: after the last round each site scores the final global model (and, when
// configured, its own last local model) on its test split; one row per site and model, Dice /
// HD95 / NSD per class. Sites that have not reported yet are listed under the table.
import { h, setChildren, table, th } from './dom.js';

function cell(m, digits) {
  if (!m || !(m.n > 0)) return '—';
  const mean = m.mean === null ? '∞' : Number(m.mean).toFixed(digits);
  return m.infinite > 0 && m.mean !== null ? `${mean} (∞ ${m.infinite}/${m.n})` : mean;
}

/** @param {HTMLElement} section @param {HTMLTableElement} el @param {HTMLElement} note */
export function renderCrossSite(section, el, note, snapshot) {
  const t = snapshot.crossSite;
  section.hidden = !t;
  if (!t) return;
  const labels = Array.isArray(t.labels) ? t.labels : [];
  const headers = [th('Site'), th('Model'), th('Test cases', 'num')];
  for (const l of labels) headers.push(th(`${l} Dice`, 'num'), th(`${l} HD95 (mm)`, 'num'), th(`${l} NSD`, 'num'));
  headers.push(th('Mean Dice', 'num'));
  const rows = (t.rows ?? []).map((r) =>
    h(
      'tr',
      { dataset: { site: String(r.siteId), model: String(r.model) } },
      h('th', { scope: 'row' }, r.siteId),
      h('td', null, r.model === 'local' ? `local (round ${r.localRound ?? '?'})` : `global v${t.checkpointVersion}`),
      h('td', { class: 'num' }, r.cases),
      labels.flatMap((l) => {
        const c = r.classes?.[l];
        return [h('td', { class: 'num' }, cell(c?.dice, 3)), h('td', { class: 'num' }, cell(c?.hd95, 1)), h('td', { class: 'num' }, cell(c?.nsd, 3))];
      }),
      h('td', { class: 'num' }, r.meanDice === null ? '—' : Number(r.meanDice).toFixed(3)),
    ),
  );
  const empty = h('tr', null, h('td', { colspan: headers.length, class: 'muted' }, 'No site has reported yet.'));
  table(el, headers, rows.length ? rows : [empty]);
  const reported = new Set((t.rows ?? []).map((r) => r.siteId));
  const missing = (t.enrolledSites ?? []).filter((s) => !reported.has(s));
  const tol = t.nsdToleranceMm === null ? '' : ` NSD at ${t.nsdToleranceMm} mm.`;
  setChildren(note, `Final model: round ${t.round}, checkpoint v${t.checkpointVersion}. Means over each site's own test cases (HD95 over the cases where it is finite).${tol}`, missing.length ? ` Not reported yet: ${missing.join(', ')}.` : '');
}
