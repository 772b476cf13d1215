/**
 * The model card written beside an export (JSON for machines, Markdown for people): what the
 * model is, what it was trained for and how, by whom (the sites and their sample counts, as far as
 * the checkpoint records them), how to feed it, which checkpoint it is (hash, signature, whether
 * it was verified), how the export was checked, and the cross-site validation table.
 *
 * The coordinator's state DB is private to it; the card reads only what the checkpoint directory
 * carries. The coordinator writes `cross-site.json` beside the final checkpoint once sites report
 * (coordinator/server/cross-site.ts): the sites × metrics table, and the participating sites with
 * their rounds and sample counts as it recorded them. Without it, participating sites come from
 * meta.json's `extra.sites` (`[{ id, samples }]`) when present, else they are 'unknown'. Both
 * files are unsigned additions: the card says so.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CROSS_SITE_FILE, crossSiteTableSchema, formatCrossSiteTable, type CrossSiteTable } from '../../shared/protocol/cross-site-table.ts';
import type { ExperimentDescription } from '../../shared/protocol/messages.ts';
import { totalParameters } from '../../shared/weights.ts';
import type { CheckpointDir } from '../inference/checkpoint-dir.ts';
import type { PredictionModel } from '../inference/prediction-model.ts';
import { normalisationSpec, stageChannelNames } from './export-metadata.ts';
import type { StageComparison } from './verify-export.ts';

export interface ExportedFile {
  stage: string;
  /** Path as written (an .onnx file, or a tfjs stage folder's model.json). */
  file: string;
  sha256: string;
  bytes: number;
}

export interface SiteContribution {
  id: string;
  samples: number | null;
  /** Rounds in which the site's update was aggregated, when recorded. */
  rounds?: number;
}

export interface ModelCard {
  kind: 'patchfed-model-card';
  version: 1;
  createdAt: string;
  format: 'onnx' | 'tfjs';
  /** Where the weights come from, in words. */
  source: string;
  files: ExportedFile[];
  model: {
    mode: string;
    architecture: { base: number; depth: number; norm: string };
    stages: { stage: string; inChannels: number; numClasses: number; parameters: number; channels: string[] }[];
    labels: Record<string, string>;
    labelValues: number[];
    modalities: string[];
  };
  experiment: (Pick<ExperimentDescription, 'id' | 'task' | 'rounds' | 'localSteps' | 'learningRate' | 'seed' | 'strategy'> & { model: ExperimentDescription['model'] }) | null;
  checkpoint: {
    dir: string;
    version: number;
    round: number;
    createdAt: string;
    sha256: string;
    sizeBytes: number;
    signature: string;
    keyId: string;
    verified: boolean;
    verification: string;
  } | null;
  /** Sites aggregated into the checkpoint, with their training-sample counts; 'unknown' when the checkpoint does not record them. */
  sites: SiteContribution[] | 'unknown';
  strategy: string;
  /** Privacy settings of the experiment, when its description declares any; null = none declared. */
  privacy: Record<string, unknown> | null;
  preprocessing: { normalization: Record<string, unknown>[]; notes: string[] };
  /** How the export was checked against the tfjs model, when it was. */
  verification: { method: string; stages: StageComparison[] } | null;
  /** Per-site Dice / HD95 / NSD of this model on each site's test split (the coordinator's cross-site.json); null when the checkpoint folder has none. */
  crossSiteValidation: CrossSiteTable | null;
  crossSiteValidationNote: string;
}

/** cross-site.json beside the checkpoint, when it is this checkpoint's (its version and sha256 match). */
export function readCrossSite(checkpoint: CheckpointDir | undefined): { table: CrossSiteTable | null; note: string } {
  if (!checkpoint) return { table: null, note: 'not available: a local training output has no federation to validate across' };
  const file = path.join(checkpoint.dir, CROSS_SITE_FILE);
  if (!existsSync(file)) {
    return { table: null, note: `not available: ${file} does not exist (the coordinator writes it beside the final checkpoint when the sites report their test-split scores after the last round)` };
  }
  let parsed;
  try {
    parsed = crossSiteTableSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    return { table: null, note: `not available: ${file} is not valid JSON` };
  }
  if (!parsed.success) return { table: null, note: `not available: ${file} is not a cross-site validation table (${parsed.error.issues[0]?.message ?? 'schema'})` };
  const t = parsed.data;
  if (t.checkpointVersion !== checkpoint.meta.version || t.checkpointSha256 !== checkpoint.meta.sha256) {
    return { table: null, note: `not available: ${file} scores checkpoint v${t.checkpointVersion}, not this one (v${checkpoint.meta.version})` };
  }
  const missing = t.enrolledSites.filter((s) => !t.rows.some((r) => r.siteId === s));
  return {
    table: t,
    note: `each site's scores of this checkpoint on its own test split, as the sites reported them to the coordinator (site-signed messages; ${CROSS_SITE_FILE} itself is written by the coordinator, unsigned)${missing.length > 0 ? `; not reported: ${missing.join(', ')}` : ''}`,
  };
}

function sitesOf(checkpoint: CheckpointDir | undefined, crossSite: CrossSiteTable | null): SiteContribution[] | 'unknown' {
  if (crossSite?.participants && crossSite.participants.length > 0) return crossSite.participants.map((p) => ({ id: p.siteId, samples: p.samples, rounds: p.rounds }));
  const raw = checkpoint?.meta.extra?.sites;
  if (!Array.isArray(raw) || raw.length === 0) return 'unknown';
  const sites: SiteContribution[] = [];
  for (const s of raw) {
    if (typeof s !== 'object' || s === null) return 'unknown';
    const { id, samples } = s as Record<string, unknown>;
    if (typeof id !== 'string' || typeof samples !== 'number') return 'unknown';
    sites.push({ id, samples });
  }
  return sites;
}

/**
 * Privacy settings the signed experiment description declares — site-level DP (strategy.dp) and
 * secure aggregation — plus, for DP, the (ε, δ) spent up to this checkpoint as the coordinator's
 * accountant recorded it in the checkpoint's signed metadata (meta.extra.privacy); null when neither.
 */
export function privacyOf(description: ExperimentDescription | undefined, extra: Readonly<Record<string, unknown>> | undefined): Record<string, unknown> | null {
  if (!description) return null;
  const out: Record<string, unknown> = {};
  if (description.strategy.dp) out.differentialPrivacy = { ...description.strategy.dp, spent: spentPrivacy(extra) ?? 'not recorded in this checkpoint' };
  if (description.aggregation?.secure) out.secureAggregation = { ...description.aggregation.secure };
  return Object.keys(out).length > 0 ? out : null;
}

function spentPrivacy(extra: Readonly<Record<string, unknown>> | undefined): { epsilon: number; delta: number; rounds: number } | null {
  const record = extra?.privacy;
  if (typeof record !== 'object' || record === null) return null;
  const { epsilon, delta, rounds } = record as Record<string, unknown>;
  return typeof epsilon === 'number' && typeof delta === 'number' && typeof rounds === 'number' ? { epsilon, delta, rounds } : null;
}

export function buildModelCard(
  model: PredictionModel,
  checkpoint: CheckpointDir | undefined,
  format: 'onnx' | 'tfjs',
  files: ExportedFile[],
  verification: ModelCard['verification'],
  now = new Date(),
): ModelCard {
  const d = checkpoint?.description;
  const labels = model.labelNames ?? Array.from({ length: model.numClasses }, (_, k) => `class ${k}`);
  const main = model.stages[model.stages.length - 1];
  const arch = main?.net.config;
  const crossSite = readCrossSite(checkpoint);
  return {
    kind: 'patchfed-model-card',
    version: 1,
    createdAt: now.toISOString(),
    format,
    source: model.source,
    files,
    model: {
      mode: model.mode,
      architecture: { base: arch?.base ?? 0, depth: arch?.depth ?? 0, norm: arch?.norm ?? '?' },
      stages: model.stages.map((s) => ({
        stage: s.stage,
        inChannels: s.net.config.inChannels,
        numClasses: s.net.config.numClasses,
        parameters: totalParameters(s.net.manifest().filter((w) => w.trainable)),
        channels: stageChannelNames(model, s),
      })),
      labels: Object.fromEntries(labels.map((l, k) => [String(model.labelValues[k] ?? k), l])),
      labelValues: model.labelValues,
      modalities: model.modalities ?? [],
    },
    experiment: d ? { id: d.id, task: d.task, rounds: d.rounds, localSteps: d.localSteps, learningRate: d.learningRate, seed: d.seed, strategy: d.strategy, model: d.model } : null,
    checkpoint: checkpoint
      ? {
          dir: checkpoint.dir,
          version: checkpoint.meta.version,
          round: checkpoint.meta.round,
          createdAt: checkpoint.meta.createdAt,
          sha256: checkpoint.meta.sha256,
          sizeBytes: checkpoint.meta.sizeBytes,
          signature: checkpoint.meta.signature,
          keyId: checkpoint.meta.keyId,
          verified: checkpoint.verification.verified,
          verification: checkpoint.verification.summary,
        }
      : null,
    sites: sitesOf(checkpoint, crossSite.table),
    strategy: d ? d.strategy.name : 'none (local training)',
    privacy: privacyOf(d, checkpoint?.meta.extra),
    preprocessing: { normalization: normalisationSpec(model), notes: model.notes.filter((n) => n.startsWith('windows:') || n.startsWith('normalisation layers:')) },
    verification,
    crossSiteValidation: crossSite.table,
    crossSiteValidationNote: crossSite.note,
  };
}

/** One line per distinct normalisation (the MR channels share one), naming the channels. */
function normalisationLines(specs: readonly Record<string, unknown>[]): string[] {
  const groups = new Map<string, string[]>();
  for (const n of specs) {
    const stats = 'lower' in n ? ` (lower ${String(n.lower)}, upper ${String(n.upper)}, mean ${String(n.mean)}, std ${String(n.std)})` : 'statistics' in n ? ` (${String(n.statistics)})` : '';
    const key = `${String(n.scheme)}: ${String(n.description)}${stats}`;
    groups.set(key, [...(groups.get(key) ?? []), `${String(n.modality)} (channel ${String(n.channel)})`]);
  }
  return [...groups.entries()].map(([how, channels]) => `- ${channels.join(', ')}: ${how}`);
}

function table(header: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

export function modelCardMarkdown(card: ModelCard): string {
  const e = card.experiment;
  const c = card.checkpoint;
  const lines: string[] = [`# Model card: ${e ? `${e.task} (${e.id})` : 'PatchFed U-Net'}`, ''];
  lines.push(
    `${card.model.mode} 3D U-Net (base ${card.model.architecture.base}, depth ${card.model.architecture.depth}, ${card.model.architecture.norm} norm), exported as ${card.format} on ${card.createdAt}.`,
    '',
    '## Files',
    '',
    ...table(['stage', 'file', 'bytes', 'sha256'], card.files.map((f) => [f.stage, `\`${f.file}\``, String(f.bytes), `\`${f.sha256}\``])),
    '',
    '## Training',
    '',
  );
  if (e) {
    lines.push(
      `- experiment \`${e.id}\`: ${e.task}`,
      `- strategy: ${e.strategy.name}${'mu' in e.strategy ? ` (μ = ${e.strategy.mu})` : ''}; ${e.rounds} round(s) planned of ${e.localSteps} local steps, learning rate ${e.learningRate}, seed ${e.seed}`,
      `- checkpoint: round ${c?.round ?? '?'} (version ${c?.version ?? '?'})`,
      `- privacy: ${card.privacy ? JSON.stringify(card.privacy) : 'none declared in the signed experiment description (no differential privacy or secure aggregation)'}`,
      '',
      '### Participating sites',
      '',
      ...(card.sites === 'unknown'
        ? ['unknown: the checkpoint does not record which sites were aggregated into it or their sample counts (the coordinator keeps them in its private state database).']
        : table(['site', 'rounds aggregated', 'training samples'], card.sites.map((s) => [s.id, s.rounds === undefined ? '?' : String(s.rounds), s.samples === null ? '?' : String(s.samples)]))),
    );
  } else {
    lines.push(`- ${card.source}`);
  }
  lines.push('', '## Checkpoint', '');
  if (c) {
    lines.push(
      `- directory: \`${c.dir}\``,
      `- sha256 of weights.pfw: \`${c.sha256}\` (${c.sizeBytes} bytes), written ${c.createdAt}`,
      `- coordinator signature (key ${c.keyId}): \`${c.signature}\``,
      `- ${c.verified ? 'verified' : 'NOT verified'}: ${c.verification}`,
    );
  } else {
    lines.push(`- none read: the weights are ${card.source} (tfjs artifacts carry no signature)`);
  }
  lines.push('', '## Input and preprocessing', '');
  lines.push(
    ...table(
      ['stage', 'input channels (in order)'],
      card.model.stages.map((s) => [s.stage, s.channels.join(', ')]),
    ),
    '',
    ...normalisationLines(card.preprocessing.normalization),
    ...card.preprocessing.notes.map((n) => `- ${n}`),
    '',
    `Labels: ${Object.entries(card.model.labels).map(([v, name]) => `${v} ${name}`).join(', ')}.`,
    '',
    '## Export check',
    '',
  );
  if (card.verification) {
    lines.push(
      `${card.verification.method}:`,
      '',
      ...table(['stage', 'input [n, x, y, z, C]', 'max abs difference of probabilities'], card.verification.stages.map((s) => [s.stage, s.shape.join('×'), s.maxAbsDiff.toExponential(2)])),
    );
  } else {
    lines.push('not run (export with --verify to compare the export with the tfjs model).');
  }
  lines.push('', '## Cross-site validation', '', card.crossSiteValidationNote, '');
  if (card.crossSiteValidation) {
    const t = card.crossSiteValidation;
    lines.push(
      `Dice, HD95 (mm, mean over the cases where it is finite) and NSD${t.nsdToleranceMm === null ? '' : ` at ${t.nsdToleranceMm} mm`} per class, mean over each site's test cases; 'local' rows are the site's own last local model, for comparison.`,
      '',
      ...formatCrossSiteTable(t),
      '',
    );
  }
  return `${lines.join('\n')}\n`;
}
