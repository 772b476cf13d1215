/**
 * The robust aggregator's memory bound and file hygiene (coordinator/strategies/robust.ts): with
 * a slice budget far below sites × model, finish() reads the retained update files slice by slice
 * (held values ≤ the budget, many slices per file), the result equals the rule applied to the
 * whole vectors at once, and every retained file is gone afterwards — also when a round attempt
 * ends without finishing (dispose).
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RETAINED_DIR, collectRuns, encodeWeights, fileRuns, inMemoryValues, type WeightRuns } from '../shared/codec/index.ts';
import type { NamedWeights, WeightSpec } from '../shared/weights.ts';
import { RobustAggregator, type RobustRule } from '../coordinator/strategies/index.ts';
import { coordinateMedian, trimmedMean } from '../coordinator/strategies/robust-math.ts';

const MANIFEST: WeightSpec[] = [
  { name: 'a/kernel', shape: [10_000], trainable: true, role: 'conv-kernel' },
  { name: 'a/gamma', shape: [7], trainable: true, role: 'norm-gamma' },
  { name: 'b/kernel', shape: [3_001], trainable: true, role: 'conv-kernel' },
];
const SITES = 5;

function siteWeights(site: number): NamedWeights {
  return { manifest: MANIFEST, values: MANIFEST.map((s, t) => Float32Array.from({ length: s.shape[0]! }, (_, i) => Math.sin(0.37 * i * (site + 1) + t) + (site === 4 ? 50 : 0))) };
}

let spool: string | null = null;
afterEach(() => {
  if (spool) rmSync(spool, { recursive: true, force: true });
  spool = null;
});

/** An update as the upload path hands it over: a spooled PFW file, which retain() moves to <spool>/retained/. */
function spooled(w: NamedWeights, name: string): WeightRuns {
  spool ??= mkdtempSync(join(tmpdir(), 'patchfed-robust-test-'));
  const path = join(spool, `${name}.pfw`);
  writeFileSync(path, encodeWeights(w));
  return fileRuns(path, MANIFEST, `update ${name}`);
}

/** Update files the aggregation holds on to. */
function retained(): string[] {
  try {
    return readdirSync(join(spool ?? '', RETAINED_DIR));
  } catch {
    return [];
  }
}

describe('robust aggregation in slices over retained files', () => {
  for (const rule of [{ kind: 'median' }, { kind: 'trimmed-mean', beta: 0.2 }] as RobustRule[]) {
    it(`${rule.kind}: exact result with ${SITES} × 4 KiB held at once for a 52 KB model; files deleted`, async () => {
      const global = siteWeights(0);
      const agg = new RobustAggregator(inMemoryValues(global), rule, { sliceBudgetBytes: SITES * 4096 });
      const sites = Array.from({ length: SITES }, (_, s) => siteWeights(s));
      for (const [s, w] of sites.entries()) await agg.add(`site-${s}`, spooled(w, `site-${s}`), 10);
      expect(retained()).toHaveLength(SITES);

      const out = collectRuns(MANIFEST);
      agg.finish(out.sink);
      const stats = agg.stats!;
      expect(stats.sliceBytes).toBeLessThanOrEqual(SITES * 4096);
      expect(stats.slicesPerSite).toBeGreaterThanOrEqual(Math.ceil(13_008 / 1024));
      expect(stats.modelElements).toBe(13_008);
      expect(retained()).toEqual([]);

      // The same rule over whole tensors in one go.
      MANIFEST.forEach((_, t) => {
        const expected = new Float32Array(sites[0]!.values[t]!.length);
        const all = sites.map((w) => w.values[t]!);
        if (rule.kind === 'median') coordinateMedian(all, expected);
        else if (rule.kind === 'trimmed-mean') trimmedMean(all, rule.beta, expected);
        expect(out.weights.values[t]).toEqual(expected);
        // The outlier site (+50 everywhere) moved nothing.
        expect(Math.max(...out.weights.values[t]!.map(Math.abs))).toBeLessThan(1.01);
      });
    });
  }

  it('a round attempt that ends without finishing deletes what it retained', async () => {
    const agg = new RobustAggregator(inMemoryValues(siteWeights(0)), { kind: 'median' });
    await agg.add('site-0', spooled(siteWeights(1), 'site-0'), 10);
    await agg.add('site-1', spooled(siteWeights(2), 'site-1'), 10);
    expect(retained()).toHaveLength(2);
    agg.dispose();
    expect(retained()).toEqual([]);
    await expect(agg.add('site-2', spooled(siteWeights(3), 'site-2'), 10)).rejects.toThrow(/arrived after .* ended/);
    expect(retained()).toEqual([]);
  });
});
