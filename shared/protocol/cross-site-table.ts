/**
 * The cross-site validation table: for every site that reported (a signed `final-evaluation`),
 * its test-split scores of the experiment's final global model — and, when the site was
 * configured to, of its own last local model — per class. The coordinator builds it from its
 * state DB (coordinator/server/cross-site.ts), serves it on the dashboard, writes it beside the
 * final checkpoint as `cross-site.json` (read by `patchfed export`'s model card) and the
 * simulation report includes it. Numbers only: no case is ever named.
 */
import { z } from 'zod';

export const CROSS_SITE_FILE = 'cross-site.json';

/** mean: over the cases where the metric is finite (null: none); n: cases where it is defined; infinite: cases where it is +∞. */
const caseMeanSchema = z.strictObject({ mean: z.number().nullable(), n: z.int().min(0), infinite: z.int().min(0) });

export const crossSiteRowSchema = z.strictObject({
  siteId: z.string(),
  model: z.enum(['global', 'local']),
  /** Round the local model was trained in ('local' rows). */
  localRound: z.int().nullable(),
  cases: z.int().min(0),
  /** Per foreground class name. */
  classes: z.record(z.string(), z.strictObject({ dice: caseMeanSchema, hd95: caseMeanSchema, nsd: caseMeanSchema })),
  /** Mean over classes of the Dice means (classes with no value left out); null when none. */
  meanDice: z.number().nullable(),
  reportedAt: z.string(),
});

export const crossSiteTableSchema = z.strictObject({
  kind: z.literal('patchfed-cross-site-validation'),
  experimentId: z.string(),
  round: z.int(),
  checkpointVersion: z.int(),
  checkpointSha256: z.string(),
  nsdToleranceMm: z.number().nullable(),
  /** Foreground class names, in label order. */
  labels: z.array(z.string()),
  /** Sites enrolled in the experiment; those without a row have not reported (yet). */
  enrolledSites: z.array(z.string()),
  rows: z.array(crossSiteRowSchema),
  /** Sites whose updates were aggregated, as the coordinator recorded them: rounds with an accepted update, and the training samples of the last one. */
  participants: z.array(z.strictObject({ siteId: z.string(), rounds: z.int().min(0), samples: z.int().min(0).nullable() })).optional(),
});

export type CrossSiteRow = z.output<typeof crossSiteRowSchema>;
export type CrossSiteTable = z.output<typeof crossSiteTableSchema>;
export type CrossSiteMean = CrossSiteRow['classes'][string]['dice'];

/** "0.912", "4.2 (∞ in 1 of 3)", "—": one cell of the table, for text reports. */
export function formatCrossSiteCell(m: CrossSiteMean | undefined, digits: number): string {
  if (!m || m.n === 0) return '—';
  const mean = m.mean === null ? '∞' : m.mean.toFixed(digits);
  return m.infinite > 0 && m.mean !== null ? `${mean} (∞ in ${m.infinite} of ${m.n})` : mean;
}

/** The table as text lines (simulation report, model card): one line per site and model, Dice / HD95 / NSD per class. */
export function formatCrossSiteTable(t: CrossSiteTable): string[] {
  const header = ['site', 'model', 'cases', ...t.labels.flatMap((l) => [`${l} Dice`, `${l} HD95 mm`, `${l} NSD`]), 'mean Dice'];
  const rows = t.rows.map((r) => [
    r.siteId,
    r.model === 'local' ? `local (round ${r.localRound ?? '?'})` : `global v${t.checkpointVersion}`,
    String(r.cases),
    ...t.labels.flatMap((l) => {
      const c = r.classes[l];
      return [formatCrossSiteCell(c?.dice, 3), formatCrossSiteCell(c?.hd95, 1), formatCrossSiteCell(c?.nsd, 3)];
    }),
    r.meanDice === null ? '—' : r.meanDice.toFixed(3),
  ]);
  const missing = t.enrolledSites.filter((s) => !t.rows.some((r) => r.siteId === s));
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    ...(missing.length > 0 ? [``, `not reported: ${missing.join(', ')}`] : []),
  ];
}
