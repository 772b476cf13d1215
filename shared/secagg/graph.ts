/**
 * Who masks with whom and who holds whose shares. SecAgg (Bonawitz et al. 2017) uses the complete
 * graph: every site masks with and shares to every other, O(n) PRG expansions per site. SecAgg+
 * (Bell et al. 2020, §3 and §4.1) uses a random k-regular Harary graph H(n, k) — sites placed on a
 * ring in a random order, each joined to its k/2 nearest on either side — which cuts site work to
 * O(k) expansions with k = O(log n) while keeping privacy and dropout robustness with high
 * probability. Both ends build the graph from the round's public seed, so they agree.
 *
 * A neighbourhood lists the site's neighbours, not the site itself; a site always holds one share
 * of its own secrets too (Bonawitz et al. 2017 share "to all users including u itself").
 */
import { PatchFedError } from '../errors.ts';
import { sha256, transcript } from '../crypto/encoding.ts';
import { contextFields, type SecAggContext } from './key-agreement.ts';
import { expandMask } from './mask-prg.ts';

export type MaskingGraph = ReadonlyMap<string, readonly string[]>;

function checkIds(siteIds: readonly string[]): string[] {
  const sorted = [...siteIds].sort();
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1]) throw new PatchFedError('secagg-graph', `Secure aggregation: site '${sorted[i] ?? ''}' is listed twice.`, { subject: sorted[i] });
  }
  return sorted;
}

export function completeGraph(siteIds: readonly string[]): MaskingGraph {
  const ids = checkIds(siteIds);
  return new Map(ids.map((id) => [id, ids.filter((other) => other !== id)]));
}

/**
 * H(n, k) over a permutation of the sites drawn from `seed` (32 bytes, public per round). `k` is
 * rounded up to even; k ≥ n − 1 gives the complete graph.
 */
export function hararyGraph(siteIds: readonly string[], degree: number, seed: Uint8Array): MaskingGraph {
  const ids = checkIds(siteIds);
  const n = ids.length;
  if (!(Number.isSafeInteger(degree) && degree >= 2)) {
    throw new PatchFedError('secagg-graph', `Secure aggregation: the neighbourhood size must be an integer ≥ 2, got ${String(degree)}.`);
  }
  if (degree >= n - 1) return completeGraph(ids);
  const half = Math.ceil(degree / 2);
  // Fisher–Yates with the seed's keystream: every site computes the same order.
  const words = expandMask(seed, n);
  const order = [...ids];
  for (let i = n - 1; i > 0; i--) {
    const j = (words[i] ?? 0) % (i + 1);
    [order[i], order[j]] = [order[j] ?? '', order[i] ?? ''];
  }
  const neighbours = new Map<string, Set<string>>(ids.map((id) => [id, new Set<string>()]));
  order.forEach((id, i) => {
    for (let d = 1; d <= half; d++) {
      const other = order[(i + d) % n] ?? id;
      if (other === id) continue;
      neighbours.get(id)?.add(other);
      neighbours.get(other)?.add(id);
    }
  });
  return new Map(ids.map((id) => [id, [...(neighbours.get(id) ?? [])].sort()]));
}

/** The neighbours of `siteId`, or a clean error when the graph does not know it. */
export function neighboursOf(graph: MaskingGraph, siteId: string): readonly string[] {
  const n = graph.get(siteId);
  if (!n) throw new PatchFedError('secagg-graph', `Secure aggregation: site '${siteId}' is not part of this round.`, { subject: siteId });
  return n;
}

/**
 * The round's graph as both ends compute it from the roster: complete without `neighbours`,
 * else H(n, k) seeded with a hash of the context and every advertised key. No seed travels: the
 * coordinator cannot pick a graph without changing the keys, which are the sites' own.
 */
export function rosterGraph(
  ctx: SecAggContext,
  roster: readonly { siteId: string; maskPublicKey: Uint8Array; sharePublicKey: Uint8Array }[],
  neighbours: number | undefined,
): MaskingGraph {
  const ids = roster.map((a) => a.siteId);
  if (neighbours === undefined) return completeGraph(ids);
  const sorted = [...roster].sort((a, b) => (a.siteId < b.siteId ? -1 : a.siteId > b.siteId ? 1 : 0));
  const seed = sha256(transcript('patchfed-secagg-graph-v1', ...contextFields(ctx), ...sorted.flatMap((a) => [a.siteId, a.maskPublicKey, a.sharePublicKey])));
  return hararyGraph(ids, neighbours, seed);
}
