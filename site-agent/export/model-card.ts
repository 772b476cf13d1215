/**
 * The model card written beside an export (JSON for machines, Markdown for people): what the
 * model is, what it was trained for and how, by whom (the sites and their sample counts, as far as
 * the checkpoint records them), how to feed it, which checkpoint it is (hash, signature, whether
 * it was verified), how the export was checked, and the cross-site validation table (a
 * placeholder until the coordinator records one).
 *
 * The coordinator's state DB is private to it; the card reads only what the checkpoint directory
 * carries. Participating sites come from meta.json's unsigned `extra.sites`
 * (`[{ id, samples }]`, the sites aggregated into that checkpoint) when the coordinator writes it;
 * otherwise they are 'unknown'.
 */
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
  samples: number;
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
  /** Per-site Dice / HD95 / NSD of this model on each site's test split: not recorded yet (null). */
  crossSiteValidation: null;
  crossSiteValidationNote: string;
}

function sitesOf(checkpoint: CheckpointDir | undefined): SiteContribution[] | 'unknown' {
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

function privacyOf(description: ExperimentDescription | undefined): Record<string, unknown> | null {
  if (!description) return null;
  const declared: unknown = Object.entries(description).find(([k]) => k === 'privacy')?.[1];
  return typeof declared === 'object' && declared !== null ? { ...declared } : null;
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
    sites: sitesOf(checkpoint),
    strategy: d ? d.strategy.name : 'none (local training)',
    privacy: privacyOf(d),
    preprocessing: { normalization: normalisationSpec(model), notes: model.notes.filter((n) => n.startsWith('windows:') || n.startsWith('normalisation layers:')) },
    verification,
    crossSiteValidation: null,
    crossSiteValidationNote: 'not available: per-site Dice, HD95 and NSD of the final model on each site\'s test split are not recorded with the checkpoint yet (cross-site validation, issue 13 part 3)',
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
        : table(['site', 'training samples'], card.sites.map((s) => [s.id, String(s.samples)]))),
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
  return `${lines.join('\n')}\n`;
}
