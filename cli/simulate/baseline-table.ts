/**
 * `simulate --baselines`: the per-site table of what federation buys. Each site scores three
 * models on its own validation split — its local-only model, the federated global model and the
 * pooled (centralised) model — and the table states the federated model's mean Dice as a
 * percentage of the pooled model's, per site and over the sites, with the targets the project
 * holds itself to (≥ 98% of pooled on every site, better than local-only on every site; issue 15,
 * after Sheller et al. 2020, who reached ~99% of centralised training across 10 institutions).
 */
import { meanOverLabels, type LabelDice, type SimulationReport } from './report.ts';

/** Federated mean Dice as a share of pooled the project aims for at every site. */
export const TARGET_SHARE_OF_POOLED = 0.98;

export interface BaselineSiteRow {
  site: string;
  siteStyle: number | null;
  localOnly: number | null;
  federated: number | null;
  pooled: number | null;
  /** federated / pooled, null when either is missing or pooled is 0. */
  shareOfPooled: number | null;
}

export interface BaselineComparison {
  rows: BaselineSiteRow[];
  /** Means over the sites of each column; the share is mean federated / mean pooled. */
  mean: BaselineSiteRow;
  everySiteReachesTarget: boolean;
  everySiteBeatsLocalOnly: boolean;
}

const share = (fed: number | null, pooled: number | null): number | null => (fed !== null && pooled !== null && pooled > 0 ? fed / pooled : null);

function meanOf(values: readonly (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null);
  return v.length === values.length && v.length > 0 ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

/** Per-site mean Dice over labels of the three models, from the report's baselines. */
export function compareBaselines(report: SimulationReport): BaselineComparison | null {
  const b = report.baselines;
  if (!b) return null;
  // A partially annotated site reports only the classes it scored (e.g. 'whole tumour'): its
  // mean is over those, the same for all three models since each is scored on its ground truth.
  const of = (d: LabelDice | undefined) => (d ? meanOverLabels(d, Object.keys(d)) : null);
  const rows = report.sites.map((s): BaselineSiteRow => {
    const federated = of(b.federated.sites?.[s.id]);
    const pooled = of(b.pooled.sites[s.id]);
    return { site: s.id, siteStyle: s.siteStyle, localOnly: of(b.localOnly.sites[s.id]), federated, pooled, shareOfPooled: share(federated, pooled) };
  });
  const mean: BaselineSiteRow = {
    site: 'mean',
    siteStyle: null,
    localOnly: meanOf(rows.map((r) => r.localOnly)),
    federated: meanOf(rows.map((r) => r.federated)),
    pooled: meanOf(rows.map((r) => r.pooled)),
    shareOfPooled: null,
  };
  mean.shareOfPooled = share(mean.federated, mean.pooled);
  return {
    rows,
    mean,
    everySiteReachesTarget: rows.length > 0 && rows.every((r) => r.shareOfPooled !== null && r.shareOfPooled >= TARGET_SHARE_OF_POOLED),
    everySiteBeatsLocalOnly: rows.length > 0 && rows.every((r) => r.federated !== null && r.localOnly !== null && r.federated > r.localOnly),
  };
}

const num = (v: number | null) => (v === null ? '–' : v.toFixed(3));
const pct = (v: number | null) => (v === null ? '–' : `${(100 * v).toFixed(1)}%`);
const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);

/** One line per site whose Dice covers other classes than the experiment's (partial annotation, --site-labels). */
export function scoredClassNotes(report: SimulationReport): string[] {
  const b = report.baselines;
  if (!b) return [];
  const all = report.labels.join(', ');
  return report.sites.flatMap((s) => {
    const d = b.pooled.sites[s.id] ?? b.localOnly.sites[s.id] ?? b.federated.sites?.[s.id];
    const scored = d ? Object.keys(d) : [];
    const same = scored.length === report.labels.length && scored.every((k) => report.labels.includes(k));
    return d && !same ? [`  ${s.id} annotates fewer classes: its Dice scores ${scored.join(', ') || 'nothing'} (not ${all})`] : [];
  });
}

/** The per-site table printed after the baselines, or [] without baselines. */
export function formatBaselineTable(report: SimulationReport): string[] {
  const c = compareBaselines(report);
  if (!c) return [];
  const strategy = report.experiment.strategy;
  const head = `  ${pad('site', 8)} ${lpad('style', 5)} ${lpad('local only', 10)} ${lpad(`federated`, 10)} ${lpad('pooled', 8)} ${lpad('fed/pooled', 10)} ${lpad('fed−local', 10)}`;
  const line = (r: BaselineSiteRow) =>
    `  ${pad(r.site, 8)} ${lpad(r.siteStyle === null ? '' : String(r.siteStyle), 5)} ${lpad(num(r.localOnly), 10)} ${lpad(num(r.federated), 10)} ${lpad(num(r.pooled), 8)} ${lpad(pct(r.shareOfPooled), 10)} ${lpad(r.federated !== null && r.localOnly !== null ? (r.federated - r.localOnly >= 0 ? '+' : '') + (r.federated - r.localOnly).toFixed(3) : '–', 10)}`;
  return [
    '',
    `Per site (mean validation Dice over the labels, each site on its own validation split; federated = ${strategy}):`,
    head,
    ...c.rows.map(line),
    line(c.mean),
    ...scoredClassNotes(report),
    `  federated ≥ ${(100 * TARGET_SHARE_OF_POOLED).toFixed(0)}% of pooled at every site: ${c.everySiteReachesTarget ? 'yes' : 'NO'}; better than local-only at every site: ${c.everySiteBeatsLocalOnly ? 'yes' : 'NO'}`,
  ];
}
