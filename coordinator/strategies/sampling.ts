/** Which sites take part in a round: a fraction of the online ones, at least `minSites`. */
import { PatchFedError } from '../../shared/errors.ts';
import type { Rng, SiteInfo } from './types.ts';

export interface SamplingOptions {
  /** Fraction of the online sites to select, in (0, 1]. */
  fractionFit: number;
  /** Never select fewer; a round with fewer online sites is refused. */
  minSites: number;
}

/** ceil(fraction · online), so 0.5 of 3 sites is 2; the 1e-9 keeps 0.3·10 from becoming 4. */
export function sampleSize(online: number, options: SamplingOptions): number {
  const wanted = Math.ceil(options.fractionFit * online - 1e-9);
  return Math.min(online, Math.max(options.minSites, wanted));
}

/**
 * Sorted ids of the selected sites. Deterministic given the rng stream and the *set* of online
 * sites: ids are sorted before the partial Fisher–Yates shuffle, so input order does not matter.
 */
export function sampleSites(sites: readonly SiteInfo[], options: SamplingOptions, rng: Rng): string[] {
  checkSamplingOptions(options);
  const seen = new Set<string>();
  for (const s of sites) {
    if (seen.has(s.id)) throw new PatchFedError('duplicate-site', `Site '${s.id}' is listed twice.`, { subject: s.id });
    seen.add(s.id);
  }
  const online = sites.filter((s) => s.online !== false).map((s) => s.id).sort();
  if (online.length < options.minSites) {
    throw new PatchFedError(
      'not-enough-sites',
      `A round needs at least ${options.minSites} online site(s); ${online.length} online (${sites.length} known).`,
    );
  }
  const n = sampleSize(online.length, options);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rng() * (online.length - i));
    [online[i], online[j]] = [online[j]!, online[i]!];
  }
  return online.slice(0, n).sort();
}

export function checkSamplingOptions(options: SamplingOptions): void {
  const { fractionFit, minSites } = options;
  if (!(Number.isFinite(fractionFit) && fractionFit > 0 && fractionFit <= 1)) {
    throw new PatchFedError('bad-strategy-config', `fractionFit must be in (0, 1], got ${fractionFit}.`, { subject: 'fractionFit' });
  }
  if (!(Number.isSafeInteger(minSites) && minSites >= 1)) {
    throw new PatchFedError('bad-strategy-config', `minSites must be an integer >= 1, got ${minSites}.`, { subject: 'minSites' });
  }
}
