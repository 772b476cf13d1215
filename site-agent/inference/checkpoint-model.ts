/**
 * A verified coordinator checkpoint as a PredictionModel: the nets are built from the signed
 * experiment description with the same tfjs-free contract the coordinator used (shared/model's
 * experimentLayout and layoutManifest, site-agent/run/nets.ts), and the global weights are loaded
 * into them. What the checkpoint cannot know is taken from the user or a site and said:
 *
 * - windows of patch-wise stages: `--patch`, else the patch the site of `--site-config` plans,
 *   else the patch most sites trained with when meta.json records it, else 4× the U-Net divisor;
 * - FedBN: the global model's normalisation tensors were never averaged (each site kept its own),
 *   so they are still their initial values; a site's local ones are required (`--local-model`).
 */
import { decodeWeightsFile, checkManifestMatches } from '../../shared/codec/index.ts';
import { PatchFedError } from '../../shared/errors.ts';
import { experimentLayout, isPatchWiseStage, layoutManifest, requiredDivisor, type ModelLayout } from '../../shared/model/index.ts';
import { isNormalisationRole, type NamedWeights } from '../../shared/weights.ts';
import { channelSchemes } from '../data/normalize.ts';
import type { Shape3 } from '../pipeline/case.ts';
import type { Weighting } from '../pipeline/sliding-window.ts';
import { createStageNets, disposeStageNets, setCombinedWeights } from '../run/nets.ts';
import type { StageSetup } from '../run/site-plan.ts';
import type { CheckpointDir } from './checkpoint-dir.ts';
import { DEFAULT_WINDOW_DIVISORS, namesByIndex, type PredictionModel } from './prediction-model.ts';
import type { SiteContext } from './site-context.ts';

export interface CheckpointModelOptions {
  site?: SiteContext;
  /** A site's local model weights (PFW, the global layout) whose normalisation tensors replace the global ones (FedBN). */
  localModel?: string;
  /** Window for the patch-wise stages (each axis a multiple of the U-Net divisor). */
  patch?: Shape3;
  overlap?: number;
  blend?: Weighting;
}

function usage(message: string, subject?: string): never {
  throw new PatchFedError('E_USAGE', message, { subject });
}

/** The global weights with FedBN's local tensors taken from a site's own model, and the note saying so. */
async function withNormalisationTensors(ckpt: CheckpointDir, layout: ModelLayout, opts: CheckpointModelOptions): Promise<{ weights: NamedWeights; note: string }> {
  const strategy = ckpt.description.strategy.name;
  const norm = layout.arch.norm;
  const tensors = norm === 'batch' ? 'γ, β and running mean/variance' : 'γ and β';
  if (strategy !== 'fedbn') {
    if (opts.localModel) usage(`--local-model is for FedBN checkpoints; ${ckpt.dir} was trained with ${strategy}, whose normalisation tensors are averaged like every other`);
    const note =
      norm === 'batch'
        ? `batch norm with the checkpoint's running statistics (the ${strategy} average of the sites')`
        : `instance norm (statistics of each window itself; ${tensors} from the checkpoint)`;
    return { weights: ckpt.weights, note };
  }
  if (!opts.localModel) {
    throw new PatchFedError(
      'E_PREDICT',
      `${ckpt.dir}: trained with FedBN, where every site keeps its own normalisation-layer tensors (${tensors}) and the coordinator never averages them, so the global checkpoint's are still their initial values (γ = 1, β = 0) and would give meaningless segmentations; pass --local-model <a site's local model weights (.pfw)> to use that site's normalisation layers`,
      { subject: ckpt.dir },
    );
  }
  const local = await decodeWeightsFile(opts.localModel, { source: `--local-model ${opts.localModel}` });
  checkManifestMatches(layoutManifest(layout), local.manifest, `--local-model ${opts.localModel}`);
  const index = new Map(local.manifest.map((s, i) => [s.name, i]));
  let replaced = 0;
  const values = ckpt.weights.manifest.map((spec, i) => {
    const mine = ckpt.weights.values[i];
    const at = index.get(spec.name);
    const theirs = at === undefined ? undefined : local.values[at];
    if (!mine || !theirs) throw new PatchFedError('E_WEIGHTS', `tensor '${spec.name}' is missing from the checkpoint or --local-model ${opts.localModel}`);
    if (!isNormalisationRole(spec.role)) return mine;
    replaced++;
    return theirs;
  });
  return {
    weights: { manifest: ckpt.weights.manifest, values },
    note: `FedBN — ${norm} norm with the site's local ${tensors} (${replaced} tensors) from --local-model ${opts.localModel}; every other tensor from the global checkpoint`,
  };
}

/**
 * The training patch most sites used, when meta.json's unsigned `extra.sites` records them
 * (`[{ id, samples, patch: [x, y, z] }]`; ties → the smaller patch). Null when it does not.
 */
function recordedSitePatch(ckpt: CheckpointDir, divisor: number): { patch: Shape3; sites: number; of: number } | null {
  const sites = ckpt.meta.extra?.sites;
  if (!Array.isArray(sites)) return null;
  const counts = new Map<string, { patch: Shape3; n: number }>();
  for (const site of sites) {
    const p: unknown = typeof site === 'object' && site !== null ? (site as Record<string, unknown>).patch : undefined;
    if (!Array.isArray(p) || p.length !== 3 || !p.every((d) => Number.isInteger(d) && d > 0 && d % divisor === 0)) continue;
    const patch: Shape3 = [Number(p[0]), Number(p[1]), Number(p[2])];
    const key = patch.join('x');
    counts.set(key, { patch, n: (counts.get(key)?.n ?? 0) + 1 });
  }
  const volume = (p: Shape3) => p[0] * p[1] * p[2];
  const best = [...counts.values()].sort((a, b) => b.n - a.n || volume(a.patch) - volume(b.patch))[0];
  return best ? { patch: best.patch, sites: best.n, of: sites.length } : null;
}

function checkWindow(patch: Shape3, divisor: number): Shape3 {
  if (patch.some((d) => !Number.isInteger(d) || d < 1 || d % divisor !== 0)) usage(`--patch ${patch.join(',')}: every axis must be a positive multiple of ${divisor} (2^(depth−1) of this U-Net)`);
  return patch;
}

export async function checkpointPredictionModel(ckpt: CheckpointDir, opts: CheckpointModelOptions = {}): Promise<PredictionModel> {
  const d = ckpt.description;
  const layout = experimentLayout(d);
  const expected = layoutManifest(layout);
  checkManifestMatches(expected, ckpt.weights.manifest, `${ckpt.dir}/weights.pfw`);
  if (expected.length !== ckpt.weights.manifest.length) {
    throw new PatchFedError('E_WEIGHTS', `${ckpt.dir}/weights.pfw has ${ckpt.weights.manifest.length} tensors; the experiment's ${layout.mode} model has ${expected.length}`, { subject: ckpt.dir });
  }
  const divisor = requiredDivisor(layout.arch);
  const { weights, note: normNote } = await withNormalisationTensors(ckpt, layout, opts);

  const planned = opts.patch === undefined && opts.site ? await opts.site.plannedWindows(layout, d.model.cascadeFactor) : undefined;
  const windows = layout.stages.map((s): { window: Shape3 | null; note: string } => {
    if (!isPatchWiseStage(s.stage)) return { window: [divisor, divisor, divisor], note: `${s.stage}: whole volume` };
    if (opts.patch) {
      const w = checkWindow(opts.patch, divisor);
      return { window: w, note: `${s.stage}: sliding window ${w.join('x')} (--patch)` };
    }
    const sitePatch = planned?.get(s.stage);
    if (sitePatch && opts.site) return { window: sitePatch, note: `${s.stage}: sliding window ${sitePatch.join('x')} (${opts.site.siteId}'s planned training patch, from --site-config)` };
    const recorded = recordedSitePatch(ckpt, divisor);
    if (recorded) return { window: recorded.patch, note: `${s.stage}: sliding window ${recorded.patch.join('x')} (the training patch of ${recorded.sites} of the ${recorded.of} site(s) meta.json records)` };
    const w = DEFAULT_WINDOW_DIVISORS * divisor;
    return {
      window: null,
      note: `${s.stage}: sliding window ${w}x${w}x${w} per case, clipped to the volume (default; the checkpoint does not record the sites' training patches, and instance-norm models predict best near them: --patch or --site-config sets one)`,
    };
  });
  // Inference needs no batch or memory estimate: only the stage and its input channels build a net.
  const setups: StageSetup[] = layout.stages.map((s, i) => ({ stage: s.stage, inChannels: s.inChannels, patch: windows[i]?.window ?? [divisor, divisor, divisor], batch: 1, estimatedPeakBytes: 0 }));
  const nets = createStageNets(setups, layout.arch, layout.classes, d.seed);
  try {
    setCombinedWeights(nets, weights);
    const labelValues = Object.keys(d.labels)
      .map(Number)
      .sort((a, b) => a - b);
    const modalities = namesByIndex(d.modalities);
    const training = opts.site?.cfg.training;
    const from = ckpt.resolvedFrom ? ` (${ckpt.resolvedFrom})` : '';
    return {
      kind: 'coordinator-checkpoint',
      where: ckpt.dir,
      source: `coordinator checkpoint v${ckpt.meta.version} (round ${ckpt.meta.round}) of experiment '${d.id}'`,
      mode: layout.mode,
      stages: nets.map((n, i) => ({ stage: n.setup.stage, net: n.net, patch: windows[i]?.window ?? null, where: `${ckpt.dir} (${n.setup.stage})` })),
      numClasses: layout.classes,
      channels: layout.channels,
      labelNames: namesByIndex(d.labels),
      labelValues,
      modalities,
      schemes: channelSchemes(modalities),
      ctStats: modalities.map(() => undefined),
      overlap: opts.overlap ?? training?.overlap ?? 0.5,
      blend: opts.blend ?? training?.blend ?? 'gaussian',
      cascadeFactor: d.model.cascadeFactor,
      divisor,
      notes: [
        `checkpoint: ${ckpt.dir}${from}`,
        `  ${ckpt.verification.summary}`,
        `model: experiment '${d.id}' (${d.task}), ${layout.mode} U-Net base ${layout.arch.base} depth ${layout.arch.depth} ${layout.arch.norm} norm, strategy ${d.strategy.name}`,
        `normalisation layers: ${normNote}`,
        `windows: ${windows.map((w) => w.note).join('; ')}`,
      ],
    };
  } catch (e) {
    disposeStageNets(nets);
    throw e;
  }
}
