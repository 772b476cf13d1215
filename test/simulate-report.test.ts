/**
 * The simulation report's round entries, built from coordinator records: each round describes
 * the checkpoint it produced, so its Dice is what the sites measured for that checkpoint at the
 * start of the next round (or the final evaluation after the last round).
 */
import { describe, expect, it } from 'vitest';
import type { RoundRow, SiteUpdateRow } from '../cli/simulate/coordinator-records.ts';
import { SIMULATE_DEFAULTS, parseSiteDrop, simulatedSiteIds } from '../cli/simulate/options.ts';
import { siteStyleFor } from '../cli/simulate/run-dir.ts';
import { BRAIN_LABELS, BRAIN_MODALITIES, SITE_ARCHETYPES, siteStyle } from '../site-agent/phantom/index.ts';
import { experimentLayout } from '../shared/model/index.ts';
import { planSite } from '../site-agent/run/site-plan.ts';
import { buildRounds, meanDice } from '../cli/simulate/report.ts';

const LABELS = ['liver', 'cancer'];

function update(siteId: string, dice: Record<string, number>, extra: Partial<SiteUpdateRow> = {}): SiteUpdateRow {
  return {
    siteId,
    status: 'accepted',
    reason: null,
    samples: 6,
    bytes: 1000,
    metrics: { loss: 0.5, dice, timeMs: 10, peakMemoryBytes: 1, backend: 'cpu-fast', patch: [16, 16, 8], batch: 1 },
    ...extra,
  };
}

function round(id: number, r: number, updates: SiteUpdateRow[], extra: Partial<RoundRow> = {}): RoundRow {
  return {
    id,
    round: r,
    attempt: 1,
    status: 'complete',
    startedAt: '2026-01-01T00:00:00Z',
    selected: ['site-a', 'site-b'],
    checkpointVersion: r + 1,
    durationMs: 1000 * r,
    failureReason: null,
    updates,
    bytesMoved: 4000,
    ...extra,
  };
}

const sizes = new Map([1, 2, 3].map((v) => [v, { version: v, round: v - 1, sha256: String(v).repeat(64), sizeBytes: 900 + v }]));

describe('simulation report rounds', () => {
  const rows: RoundRow[] = [
    round(1, 0, [], { selected: [] }),
    round(2, 1, [update('site-a', { liver: 0.1, cancer: 0 }), update('site-b', { liver: 0.3, cancer: 0.2 })]),
    // round 2: site-b dropped out; the failed first attempt of round 2 is ignored
    round(3, 2, [update('site-a', { liver: 0.5, cancer: 0.1 })], { status: 'failed', checkpointVersion: null }),
    round(4, 2, [update('site-a', { liver: 0.6, cancer: 0.2 })], { attempt: 2 }),
  ];
  rows[3]!.checkpointVersion = 3;

  it('shifts Dice to the checkpoint each round produced and uses the final evaluation for the last round', () => {
    const out = buildRounds({ rows, labels: LABELS, checkpoint: (v) => sizes.get(v) ?? null, finalDice: { 'site-a': { liver: 0.7, cancer: 0.3 }, 'site-b': { liver: 0.5, cancer: 0.1 } } });
    expect(out.map((r) => r.round)).toEqual([1, 2]);
    const [r1, r2] = out as [(typeof out)[0], (typeof out)[0]];
    // Round 1's checkpoint (v2) was measured by site-a at the start of round 2 (attempt 2); site-b did not report.
    expect(r1.checkpointSha256).toBe('2'.repeat(64));
    expect(r1.globalDice).toEqual({ liver: 0.6, cancer: 0.2 });
    expect(r1.sites.map((s) => [s.id, s.accepted, s.dice])).toEqual([
      ['site-a', true, { liver: 0.6, cancer: 0.2 }],
      ['site-b', true, null],
    ]);
    // Both sites downloaded round 1's input checkpoint (v1) and sent their updates.
    expect(r1.sites.map((s) => [s.bytesReceived, s.bytesSent, s.samples, s.patch, s.backend])).toEqual([
      [901, 1000, 6, [16, 16, 8], 'cpu-fast'],
      [901, 1000, 6, [16, 16, 8], 'cpu-fast'],
    ]);
    // The last round: the final evaluation, the completed attempt, the dropped site not accepted.
    expect(r2.attempt).toBe(2);
    expect(r2.globalDice!.liver).toBeCloseTo(0.6, 12);
    expect(r2.globalDice!.cancer).toBeCloseTo(0.2, 12);
    expect(r2.globalMeanDice).toBeCloseTo(0.4, 12);
    const b = r2.sites.find((s) => s.id === 'site-b')!;
    expect(b.accepted).toBe(false);
    expect(b.reason).toMatch(/no update/);
    expect(b.bytesSent).toBeNull();
    expect(b.bytesReceived).toBeNull();
    expect(b.dice).toEqual({ liver: 0.5, cancer: 0.1 });
  });

  it('reports a rejected update with its reason', () => {
    const rejected = [round(1, 0, [], { selected: [] }), round(2, 1, [update('site-a', { liver: 0.1, cancer: 0 }), update('site-b', {}, { status: 'rejected', reason: 'bad signature', metrics: null })])];
    const [r1] = buildRounds({ rows: rejected, labels: LABELS, checkpoint: (v) => sizes.get(v) ?? null, finalDice: null });
    expect(r1!.sites[1]).toMatchObject({ id: 'site-b', accepted: false, reason: 'bad signature', patch: null });
    expect(r1!.globalDice).toBeNull(); // no round follows and no final evaluation was given
  });

  it('averages Dice per label over sites, skipping labels a site did not report', () => {
    expect(meanDice([{ liver: 0.2, cancer: 0.4 }, { liver: 0.4 }], LABELS)).toEqual({ liver: 0.30000000000000004, cancer: 0.4 });
    expect(meanDice([], LABELS)).toBeNull();
  });
});

describe('simulate options', () => {
  it('parses --drop-site id@round and names sites a, b, c…', () => {
    expect(parseSiteDrop('site-b@3')).toEqual({ siteId: 'site-b', round: 3 });
    expect(parseSiteDrop('site-b')).toBeNull();
    expect(parseSiteDrop('@3')).toBeNull();
    expect(parseSiteDrop('site b@3')).toBeNull();
    expect(simulatedSiteIds(3)).toEqual(['site-a', 'site-b', 'site-c']);
    expect(simulatedSiteIds(27).at(-1)).toBe('site-27');
  });
});

describe('simulate defaults (what `npm start` runs)', () => {
  it('gives every site its own scanner: the listed styles, then jittered variants of them', () => {
    expect([0, 1, 2].map((i) => siteStyleFor(i, [2, 0, 3]))).toEqual([2, 0, 3]);
    expect(siteStyleFor(3, [2, 0, 3])).toBe(2 + SITE_ARCHETYPES);
    expect(siteStyle(siteStyleFor(3, [2, 0, 3])).archetype).toBe(2);
    const styles = Array.from({ length: 8 }, (_, i) => siteStyleFor(i, SIMULATE_DEFAULTS.siteStyles));
    expect(new Set(styles).size).toBe(8);
    // The default sites see tumours at least as large as the reference style (style 1's are small).
    for (const k of SIMULATE_DEFAULTS.siteStyles) expect(siteStyle(k).caseMix.tumourScale).toBeGreaterThanOrEqual(0.9);
  });

  it('plans a different patch per default budget, each large enough to learn from (≥ 16³) and within the volume', () => {
    const d = SIMULATE_DEFAULTS;
    const layout = experimentLayout({ model: { mode: d.model, preset: d.preset, norm: 'instance', cascadeFactor: 0.5 }, labels: { ...BRAIN_LABELS }, modalities: { ...BRAIN_MODALITIES } });
    const patches = d.budgetsMB.map((budgetMB) => {
      const plan = planSite({ largestShape: d.shape, channels: layout.channels, classes: layout.classes, mode: layout.mode, arch: layout.arch, budgetMB, cascadeFactor: 0.5 });
      const main = plan.stages.at(-1)!;
      expect(main.batch).toBeGreaterThanOrEqual(1);
      return main.patch;
    });
    expect(new Set(patches.map((p) => p.join('x'))).size).toBe(d.budgetsMB.length);
    for (const p of patches) {
      p.forEach((v, a) => {
        expect(v).toBeGreaterThanOrEqual(16);
        expect(v).toBeLessThanOrEqual(d.shape[a]!);
      });
    }
  });
});
