/**
 * Cross-site validation, the site's part: after the last round, score a model (the final global
 * checkpoint, or the site's own last local model) on the site's held-out TEST split — the 20% of
 * its labelled cases it never trained or validated on (site-agent/data/split.ts) — with the same
 * metrics as `patchfed evaluate` (Dice, HD95 and NSD per class, in mm from each case's affine;
 * site-agent/metrics). Only per-class means over the cases and case counts leave this module.
 *
 * The model is rebuilt from the signed experiment description with the windows the site plans for
 * its budget (as it trained), and segmented with the site's own sliding-window settings.
 * FedBN: the global model's normalisation tensors were never averaged (still their initial
 * values), so the site scores the global model with its own local ones, exactly as it would use it.
 */
import { PatchFedError } from '../../shared/errors.ts';
import { experimentLayout } from '../../shared/model/index.ts';
import type { SiteConfig } from '../../shared/config/site.ts';
import type { CaseMean, ExperimentDescription, FinalEvaluationMessage } from '../../shared/protocol/messages.ts';
import { isNormalisationRole, type NamedWeights } from '../../shared/weights.ts';
import { openMsdDataset } from '../data/index.ts';
import { geometryInMm } from '../evaluate/label-map.ts';
import { DEFAULT_NSD_TOLERANCE_MM } from '../evaluate/evaluate-folders.ts';
import { segmentCase } from '../inference/segment.ts';
import { evaluateSegmentation } from '../metrics/segmentation-metrics.ts';
import { stageModels } from '../run/evaluate.ts';
import { createStageNets, disposeStageNets, setCombinedWeights } from '../run/nets.ts';
import { planSite } from '../run/site-plan.ts';

export interface ClassScores {
  name: string;
  dice: CaseMean;
  hd95: CaseMean;
  nsd: CaseMean;
}

export interface TestSplitScores {
  cases: number;
  nsdToleranceMm: number;
  classes: ClassScores[];
}

/** Mean over the finite values; how many are defined (not NaN) and how many are +∞. */
export function caseMean(values: readonly number[]): CaseMean {
  const defined = values.filter((v) => !Number.isNaN(v));
  const finite = defined.filter((v) => Number.isFinite(v));
  return { mean: finite.length === 0 ? null : finite.reduce((a, b) => a + b, 0) / finite.length, n: defined.length, infinite: defined.length - finite.length };
}

function namesByIndex(record: Record<string, string>): string[] {
  return Object.keys(record)
    .map(Number)
    .sort((a, b) => a - b)
    .map((k) => record[String(k)] ?? String(k));
}

/**
 * The global weights with FedBN's local tensors taken from the site's last local model; null when
 * a FedBN global model cannot be scored (the site has no local model: it never trained a round).
 */
export function globalAsUsedBySite(exp: ExperimentDescription, global: NamedWeights, local: NamedWeights | null): NamedWeights | null {
  if (exp.strategy.name !== 'fedbn') return global;
  if (!local) return null;
  const byName = new Map(local.manifest.map((s, i) => [s.name, local.values[i]]));
  const values = global.manifest.map((spec, i) => {
    const own = byName.get(spec.name);
    const g = global.values[i];
    if (!g) throw new PatchFedError('E_WEIGHTS', `global tensor '${spec.name}' has no values`);
    return isNormalisationRole(spec.role) && own ? own : g;
  });
  return { manifest: global.manifest, values };
}

/**
 * Scores `weights` on the site's test split. Null when the split has no test case (a site with
 * fewer than ~3 labelled cases): there is nothing to report.
 */
export async function scoreOnTestSplit(cfg: SiteConfig, exp: ExperimentDescription, weights: NamedWeights, opts: { nsdToleranceMm?: number; signal?: AbortSignal } = {}): Promise<TestSplitScores | null> {
  const nsdToleranceMm = opts.nsdToleranceMm ?? DEFAULT_NSD_TOLERANCE_MM;
  const dataset = await openMsdDataset(cfg.dataset, { cacheMB: 0, seed: cfg.seed, maxMemoryMB: cfg.memoryBudgetMB });
  const ids = dataset.split(cfg.seed).test;
  if (ids.length === 0) return null;
  const layout = experimentLayout(exp);
  const plan = planSite({
    largestShape: dataset.largestShape(),
    channels: layout.channels,
    classes: layout.classes,
    mode: layout.mode,
    arch: layout.arch,
    budgetMB: cfg.memoryBudgetMB,
    cascadeFactor: exp.model.cascadeFactor,
    patch: cfg.training.patch,
    batch: cfg.training.batch,
  });
  const nets = createStageNets(plan.stages, layout.arch, layout.classes, exp.seed);
  try {
    setCombinedWeights(nets, weights);
    const models = stageModels(nets);
    const inference = { numClasses: layout.classes, overlap: cfg.training.overlap, blend: cfg.training.blend, divisor: plan.divisor, cascadeFactor: exp.model.cascadeFactor };
    const classValues = Array.from({ length: layout.classes - 1 }, (_, k) => k + 1);
    const perClass = classValues.map(() => ({ dice: [] as number[], hd95: [] as number[], nsd: [] as number[] }));
    let scored = 0;
    for await (const c of dataset.iterate(ids)) {
      if (opts.signal?.aborted) throw new PatchFedError('E_ABORTED', 'final evaluation abandoned');
      const seg = await segmentCase(models, c, inference);
      const { spacingMm } = geometryInMm(c.geometry);
      // Both label maps are row-major (X, Y, Z), z fastest: the metrics' grid is the case's own.
      const metrics = evaluateSegmentation(seg.labels, c.label, c.shape, spacingMm, classValues, { nsdToleranceMm });
      metrics.forEach((m, k) => {
        const into = perClass[k];
        if (!into) return;
        into.dice.push(m.dice);
        into.hd95.push(m.hd95);
        into.nsd.push(m.nsd);
      });
      scored++;
    }
    const names = namesByIndex(exp.labels);
    return {
      cases: scored,
      nsdToleranceMm,
      classes: perClass.map((v, k) => ({ name: names[k + 1] ?? String(k + 1), dice: caseMean(v.dice), hd95: caseMean(v.hd95), nsd: caseMean(v.nsd) })),
    };
  } finally {
    disposeStageNets(nets);
  }
}

export interface FinalEvaluationRun {
  cfg: SiteConfig;
  experiment: ExperimentDescription;
  completion: { round: number; checkpointVersion: number; checkpointSha256: string; global: NamedWeights };
  /** The site's own model after its last local training, if it trained a round. */
  local: { round: number; weights: NamedWeights } | null;
  /** Also score the last local model (site config federation.evaluateLocalModel). */
  evaluateLocal: boolean;
  report: (body: Omit<FinalEvaluationMessage, 'signature'>) => boolean;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  signal?: AbortSignal;
}

function summaryLine(scores: TestSplitScores): string {
  const fmt = (m: CaseMean, digits: number) => (m.mean === null ? '—' : m.mean.toFixed(digits)) + (m.infinite > 0 ? ` (∞ in ${m.infinite})` : '');
  return scores.classes.map((c) => `${c.name} Dice ${fmt(c.dice, 3)} HD95 ${fmt(c.hd95, 1)} mm NSD ${fmt(c.nsd, 3)}`).join('; ');
}

/** Scores the final global model (and the last local one when asked) on the test split and reports each. */
export async function runFinalEvaluations(run: FinalEvaluationRun): Promise<void> {
  const { completion, experiment } = run;
  const models: { model: 'global' | 'local'; weights: NamedWeights | null; localRound?: number; why?: string }[] = [
    { model: 'global', weights: globalAsUsedBySite(experiment, completion.global, run.local?.weights ?? null), why: 'a FedBN global model needs the site\'s own normalisation tensors and this site trained no round' },
  ];
  if (run.evaluateLocal) models.push({ model: 'local', weights: run.local?.weights ?? null, localRound: run.local?.round, why: 'this site trained no round, so it has no local model' });
  for (const m of models) {
    if (!m.weights) {
      run.log('warn', `cross-site validation: the ${m.model} model is not scored: ${m.why}`);
      continue;
    }
    const t0 = performance.now();
    const scores = await scoreOnTestSplit(run.cfg, experiment, m.weights, { signal: run.signal });
    if (!scores) {
      run.log('warn', `cross-site validation: the dataset's test split has no case; nothing to report`);
      return;
    }
    const sent = run.report({
      experimentId: experiment.id,
      round: completion.round,
      checkpointVersion: completion.checkpointVersion,
      checkpointSha256: completion.checkpointSha256,
      model: m.model,
      ...(m.localRound !== undefined ? { localRound: m.localRound } : {}),
      cases: scores.cases,
      nsdToleranceMm: scores.nsdToleranceMm,
      classes: scores.classes,
    });
    const what = m.model === 'global' ? `final global model v${completion.checkpointVersion}` : `last local model (round ${m.localRound ?? '?'})`;
    run.log('info', `cross-site validation: ${what} on ${scores.cases} test case(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${summaryLine(scores)}${sent ? '' : ' (offline: sent when the coordinator announces the completion again)'}`);
  }
}
