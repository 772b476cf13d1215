/**
 * Which intensity normalisation a prediction uses, decided once per model and said out loud.
 *
 * - MR channels: z-score over each channel's non-zero voxels of the case itself — nothing stored,
 *   identical at every site, so any model (train output or coordinator checkpoint) applies it.
 * - CT channels: clipping to foreground percentiles then z-score with DATASET-wide statistics
 *   (site-agent/data/normalize.ts). A `train` output stores its site's statistics. In a federation
 *   each site computed its own from its labelled cases and they never leave the site, so a
 *   coordinator checkpoint cannot carry them: predict uses one site's statistics (`--site-config`,
 *   computed exactly as that site trained) or refuses. Per-case statistics are not offered: an
 *   unlabelled image has no foreground to take them from.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { CtChannelStats } from '../data/normalize.ts';
import type { PredictionModel } from './prediction-model.ts';
import type { SiteContext } from './site-context.ts';

function fmt(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
}

function describeStats(s: CtChannelStats): string {
  return `clip [${fmt(s.lower)}, ${fmt(s.upper)}], mean ${fmt(s.mean)}, std ${fmt(s.std)}`;
}

/** Fills in the CT statistics a model lacks (from `site`) and adds the normalisation note. */
export async function resolveNormalisation(model: PredictionModel, site: SiteContext | undefined): Promise<void> {
  const names = model.modalities ?? model.schemes.map((_, c) => `channel ${c}`);
  const mr = model.schemes.flatMap((s, c) => (s === 'nonzero-zscore' ? [names[c] ?? `channel ${c}`] : []));
  const ct = model.schemes.flatMap((s, c) => (s === 'ct-clip-zscore' ? [c] : []));
  const parts: string[] = [];
  if (mr.length > 0) parts.push(`${mr.join(', ')}: per-case z-score over the non-zero voxels (as every site trained; no statistics needed)`);
  if (ct.length > 0) {
    const missing = ct.filter((c) => !model.ctStats[c]);
    let from = 'the dataset-wide foreground statistics stored with the model';
    if (missing.length > 0) {
      if (!site) {
        const which = missing.map((c) => names[c] ?? `channel ${c}`).join(', ');
        const why =
          model.kind === 'coordinator-checkpoint'
            ? `the sites normalised ${which} with dataset-wide foreground statistics that each computed from its own labelled cases, which never leave a site, so a coordinator checkpoint cannot carry them`
            : `the model's metadata has no CT statistics for ${which}`;
        throw new PatchFedError('E_PREDICT', `${model.where}: ${why}; pass --site-config <a site's config> to normalise with that site's statistics`, { subject: model.where });
      }
      const stats = await site.ctStats(names);
      for (const c of missing) model.ctStats[c] = stats[c];
      from = `${site.siteId}'s own dataset-wide foreground statistics (from --site-config ${site.configPath}; other sites trained with theirs)`;
    }
    const detail = ct.map((c) => {
      const s = model.ctStats[c];
      return `${names[c] ?? `channel ${c}`} ${s ? describeStats(s) : '?'}`;
    });
    parts.push(`${detail.join('; ')}: foreground-percentile clipping and z-score with ${from}`);
  }
  model.notes.push(`normalisation: ${parts.join('; ')}`);
}
