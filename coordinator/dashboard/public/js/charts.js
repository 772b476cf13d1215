// History charts (uPlot), each with a data table of exactly what it plots: screen-reader and
// projector friendly, and the page's tests read the values back from it.
import { h, setChildren, table, th } from './dom.js';
import * as fmt from './format.js';
import { MEAN_COLOR, seriesStyle } from './palette.js';

const uPlot = globalThis.uPlot;

function rootFontPx() {
  return parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
}

const ROUND_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000];

class ChartPanel {
  /**
   * @param {HTMLElement} parent
   * @param {{id: string, title: string, yLabel: string, kind?: 'line'|'bars', yRange?: [number, number],
   *          format: (v: number) => string, controls?: Node}} opts
   */
  constructor(parent, opts) {
    this.opts = opts;
    this.plot = null;
    this.signature = '';
    this.plotEl = h('div', { class: 'plot' });
    this.tableEl = h('table', { class: 'data chart-data', dataset: { chart: opts.id } });
    this.titleEl = h('h3', null, opts.title);
    this.figure = h(
      'figure',
      { class: 'chart-panel', id: `chart-${opts.id}`, dataset: { chart: opts.id, points: '0' } },
      h('div', { class: 'chart-head' }, this.titleEl, opts.controls ?? null),
      this.plotEl,
      h('details', { class: 'chart-table' }, h('summary', null, 'Data table'), h('div', { class: 'table-scroll' }, this.tableEl)),
    );
    parent.append(this.figure);
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(this.plotEl);
  }

  size() {
    const base = rootFontPx();
    return { width: Math.max(240, Math.floor(this.plotEl.clientWidth || 600)), height: Math.round(base * 15) };
  }

  resize() {
    if (!this.plot) return;
    const { width, height } = this.size();
    if (width !== this.plot.width || height !== this.plot.height) this.plot.setSize({ width, height });
  }

  build(series) {
    const { kind = 'line', yRange, yLabel, format } = this.opts;
    const base = rootFontPx();
    const font = `${Math.round(base * 0.85)}px system-ui, sans-serif`;
    const labelFont = `600 ${Math.round(base * 0.9)}px system-ui, sans-serif`;
    const axis = { stroke: '#1a1a1a', grid: { stroke: '#dcdcdc', width: 1 }, ticks: { stroke: '#9a9a9a', width: 1 }, font, labelFont };
    const bars = kind === 'bars' && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 48] }) : null;
    const opts = {
      ...this.size(),
      scales: {
        x: { time: false, range: (_u, min, max) => (min === max || kind === 'bars' ? [min - 0.5, max + 0.5] : [min, max]) },
        y: yRange ? { range: yRange } : { range: (_u, _min, max) => [0, max > 0 ? max * 1.08 : 1] },
      },
      axes: [
        { ...axis, label: 'Round', incrs: ROUND_INCRS, values: (_u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : '')) },
        { ...axis, label: yLabel, size: Math.round(base * 4), values: (_u, splits) => tickLabels(splits) },
      ],
      series: [
        { label: 'Round', value: (_u, v) => (v == null ? '—' : String(v)) },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          width: s.width ?? 2,
          dash: s.dash && s.dash.length ? s.dash : undefined,
          fill: bars ? `${s.stroke}bb` : undefined,
          paths: bars ?? undefined,
          spanGaps: false,
          points: { size: Math.round(base * 0.4) },
          value: (_u, v) => (v == null ? '—' : format(v)),
        })),
      ],
      // Live per-series values only while the legend stays short; 30+ sites get a plain key.
      legend: { show: true, live: series.length <= 8 },
      cursor: { drag: { x: false, y: false } },
    };
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot(opts, [[], ...series.map(() => [])], this.plotEl);
  }

  /**
   * @param {number[]} x rounds
   * @param {{label: string, values: (number|null)[], stroke: string, dash?: number[], width?: number}[]} series
   */
  update(x, series, overrides = {}) {
    Object.assign(this.opts, overrides);
    const signature = JSON.stringify([this.opts.yLabel, series.map((s) => [s.label, s.stroke, s.dash ?? [], s.width ?? 2])]);
    if (signature !== this.signature || !this.plot) {
      this.build(series);
      this.signature = signature;
    }
    this.plot.setData([x, ...series.map((s) => s.values)]);
    this.figure.dataset.points = String(x.length);
    this.figure.dataset.series = String(series.length);
    this.renderTable(x, series);
  }

  renderTable(x, series) {
    const tableFormat = this.opts.tableFormat ?? this.opts.format;
    const rows = x.map((round, i) =>
      h(
        'tr',
        { dataset: { round: String(round) } },
        h('th', { scope: 'row', class: 'num' }, round),
        series.map((s) => {
          const v = s.values[i];
          return h('td', { class: 'num', dataset: { series: s.label } }, v == null ? '—' : tableFormat(v));
        }),
      ),
    );
    table(this.tableEl, [th('Round', 'num'), ...series.map((s) => th(s.label, 'num'))], rows);
  }
}

function siteIds(snapshot) {
  const ids = snapshot.sites.map((s) => s.id);
  const seen = new Set(ids);
  for (const r of snapshot.rounds) {
    for (const id of [...Object.keys(r.siteDice ?? {}), ...Object.keys(r.siteLoss ?? {})]) {
      if (!seen.has(id)) {
        seen.add(id);
        ids.push(id);
      }
    }
  }
  return ids;
}

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export class HistoryCharts {
  /** @param {HTMLElement} container */
  constructor(container) {
    this.container = container;
    this.snapshot = null;
    this.key = '';
    this.labelSelect = h('select', { id: 'dice-site-label', 'aria-label': 'Label shown in the per-site Dice chart' });
    this.labelSelect.addEventListener('change', () => this.snapshot && this.draw(this.snapshot));
    setChildren(container);
    this.panels = {
      diceMean: new ChartPanel(container, { id: 'dice-mean', title: 'Validation Dice — mean over sites', yLabel: 'Dice', yRange: [0, 1], format: fmt.dice }),
      diceSite: new ChartPanel(container, {
        id: 'dice-site',
        title: 'Validation Dice per site',
        yLabel: 'Dice',
        yRange: [0, 1],
        format: fmt.dice,
        controls: h('label', { class: 'control' }, 'Label ', this.labelSelect),
      }),
      loss: new ChartPanel(container, { id: 'loss', title: 'Training loss per site', yLabel: 'Loss', format: (v) => fmt.loss(v), tableFormat: fmt.loss }),
      duration: new ChartPanel(container, { id: 'duration', title: 'Round duration', yLabel: 'Seconds', kind: 'bars', format: (v) => trimNumber(v) }),
      bytes: new ChartPanel(container, { id: 'bytes', title: 'Data moved per round', yLabel: 'MiB', kind: 'bars', format: (v) => trimNumber(v), tableFormat: (v) => `${v.toFixed(1)} MiB` }),
    };
  }

  /** Redraw only when the history changed (pushes during a round carry the same history). */
  render(snapshot) {
    this.snapshot = snapshot;
    const last = snapshot.rounds[snapshot.rounds.length - 1];
    const key = JSON.stringify([
      snapshot.rounds.length,
      last ? [last.round, last.durationMs, last.bytesMoved, last.globalDice] : null,
      snapshot.experiment.labels,
      snapshot.sites.map((s) => s.id),
    ]);
    if (key === this.key) return;
    this.key = key;
    this.draw(snapshot);
  }

  draw(snapshot) {
    const labels = snapshot.experiment.labels;
    this.syncLabelOptions(labels);
    const rounds = snapshot.rounds;
    const x = rounds.map((r) => r.round);
    const sites = siteIds(snapshot);

    this.panels.diceMean.update(
      x,
      labels.map((l, i) => ({ label: l, values: rounds.map((r) => num(r.globalDice?.[l])), ...seriesStyle(i), width: 2.5 })),
    );

    const label = this.labelSelect.value || labels[0];
    // Many sites: thinner, translucent lines so the mean (drawn last, on top) stays visible.
    const many = sites.length > 8;
    const siteStyle = (i) => {
      const st = seriesStyle(i);
      return { ...st, stroke: many ? `${st.stroke}b0` : st.stroke, width: many ? 1.5 : 2 };
    };
    this.panels.diceSite.update(x, [
      ...sites.map((id, i) => ({ label: id, values: rounds.map((r) => num(r.siteDice?.[id]?.[label])), ...siteStyle(i) })),
      { label: 'mean', values: rounds.map((r) => num(r.globalDice?.[label])), stroke: MEAN_COLOR, width: 3.5 },
    ]);

    this.panels.loss.update(
      x,
      sites.map((id, i) => ({ label: id, values: rounds.map((r) => num(r.siteLoss?.[id])), ...siteStyle(i) })),
    );

    // Seconds for short rounds (tests, tiny models), minutes once a round takes over two minutes.
    const longest = Math.max(0, ...rounds.map((r) => num(r.durationMs) ?? 0));
    const unitMs = longest > 120_000 ? 60_000 : 1000;
    this.panels.duration.update(
      x,
      [{ label: 'duration', values: rounds.map((r) => (num(r.durationMs) == null ? null : r.durationMs / unitMs)), stroke: '#0072B2' }],
      { yLabel: unitMs === 1000 ? 'Seconds' : 'Minutes', tableFormat: (v) => fmt.duration(v * unitMs) },
    );
    this.panels.bytes.update(x, [{ label: 'data moved', values: rounds.map((r) => fmt.megabytes(num(r.bytesMoved))), stroke: '#D55E00' }]);
  }

  syncLabelOptions(labels) {
    const current = [...this.labelSelect.options].map((o) => o.value);
    if (JSON.stringify(current) === JSON.stringify(labels)) return;
    const keep = labels.includes(this.labelSelect.value) ? this.labelSelect.value : labels[0];
    setChildren(this.labelSelect, labels.map((l) => h('option', { value: l }, l)));
    if (keep !== undefined) this.labelSelect.value = keep;
  }
}

/** Tick labels with the decimals the tick step needs, all alike (0.0, 0.5, 1.0 — not 0.000, 0.5000). */
function tickLabels(splits) {
  const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : Math.abs(splits[0] ?? 1);
  let decimals = 0;
  while (decimals < 6 && Math.abs(step * 10 ** decimals - Math.round(step * 10 ** decimals)) > 1e-6 * 10 ** decimals) decimals++;
  return splits.map((v) => v.toFixed(decimals));
}

function trimNumber(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1).replace(/\.0$/, '') : String(Number(v.toPrecision(2)));
}
