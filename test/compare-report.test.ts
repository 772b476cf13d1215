/**
 * `patchfed compare` end to end on a tiny context phantom (few steps): the report's structure
 * (JSON and markdown), and that its numbers are real measurements — peak memory > 0 and close to
 * the estimate, Dice / NSD in [0, 1] or null, HD95 ≥ 0, inference time > 0, the context breakdown
 * and stage-1 guidance — next to the thesis's numbers, plus the MSD planner table.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMPARE_MODES, runCompare, writeCompareReport, type CompareReport } from '../site-agent/run/compare.ts';
import { formatCompareMarkdown, ordering } from '../site-agent/run/compare-report.ts';

const out = mkdtempSync(join(tmpdir(), 'patchfed-compare-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const inUnit = (x: number | null) => x === null || (x >= 0 && x <= 1);

describe('compare (tiny brain context phantom)', () => {
  let report: CompareReport;

  it('trains the three modes on one split and reports real numbers', { timeout: 120_000 }, async () => {
    report = await runCompare({ task: 'brain', outDir: out, steps: 3, cases: 5, shape: [16, 16, 32], context: true, slab: 8, seed: 2, backend: 'auto', progress: null });
    expect(report.dataset.context).toBe(true);
    expect(report.dataset.spacing).toEqual([2.4, 2.4, 1.2]); // site style 2 (1.2 mm), in-plane ×2 on a 16×16×32 grid
    expect(report.nsdToleranceMm).toBe(2.4);
    expect(report.modes.map((m) => m.mode)).toEqual([...COMPARE_MODES]);
    expect(report.dataset.split.test).toBeGreaterThanOrEqual(1);
    expect(report.labels).toHaveLength(3); // brain: 3 foreground classes
    for (const m of report.modes) {
      expect(Object.keys(m.dice)).toEqual(report.labels);
      for (const d of [...Object.values(m.dice), m.meanDice]) {
        if (d !== null) {
          expect(d).toBeGreaterThanOrEqual(0);
          expect(d).toBeLessThanOrEqual(1);
        }
      }
      expect(m.inferenceMsPerVolume).toBeGreaterThan(0);
      expect(m.measuredInferencePeakBytes).toBeGreaterThan(0);
      expect(m.measuredTrainingPeakBytes).toBeGreaterThan(0);
      // Estimated within ±25% of the measured peaks.
      expect(Math.abs(m.estimatedTrainingPeakBytes / m.measuredTrainingPeakBytes! - 1), `${m.mode} training`).toBeLessThanOrEqual(0.25);
      expect(Math.abs(m.estimatedInferencePeakBytes / m.measuredInferencePeakBytes - 1), `${m.mode} inference`).toBeLessThanOrEqual(0.25);
      for (const s of m.stages) expect(s.steps).toBe(3);
      // compare's own pass agrees with train's Dice and adds boundary metrics and the context breakdown.
      expect(m.evaluation.perClass).toHaveLength(3);
      m.evaluation.perClass.forEach((c, k) => {
        const trained = m.dice[report.labels[k]!] ?? null;
        if (trained === null) expect(c.dice).toBeNull();
        else expect(c.dice).toBeCloseTo(trained, 6);
        expect(inUnit(c.nsd)).toBe(true);
        if (c.hd95Median !== null) expect(c.hd95Median).toBeGreaterThanOrEqual(0);
      });
      const ctx = m.evaluation.context!;
      for (const v of [ctx.connectedRecall, ctx.lookalikeFalsePositive, ctx.farConnectedRecall, ctx.farLookalikeFalsePositive]) expect(inUnit(v)).toBe(true);
      expect(ctx.connectedRecall).not.toBeNull();
      expect(ctx.lookalikeFalsePositive).not.toBeNull();
    }
    const [full, patch, cascade] = report.modes;
    expect(cascade!.stages.map((s) => s.stage)).toEqual(['cascade-stage1', 'cascade-stage2']);
    expect(cascade!.evaluation.stage1GuidanceDice).toHaveLength(3);
    expect(full!.evaluation.stage1GuidanceDice).toBeNull();
    expect(patch!.stages[0]!.patch).toEqual([16, 16, 8]);
    expect(report.thesis.dice.full).toEqual([80.13, 60.8, 75.99]);
    // The patch-wise U-Net needs less than the full one, as in the thesis.
    expect(patch!.measuredTrainingPeakBytes!).toBeLessThan(full!.measuredTrainingPeakBytes!);
    // MSD estimates: three modes, full far above the patch-wise ones.
    expect(report.msd.modes.map((m) => m.mode)).toEqual([...COMPARE_MODES]);
    expect(report.msd.modes[0]!.trainingBytes).toBeGreaterThan(5 * report.msd.modes[1]!.trainingBytes);
    expect(report.runtimeMs).toBeGreaterThan(0);
  });

  it('writes JSON and markdown with the thesis tables', () => {
    const md = formatCompareMarkdown(report);
    const paths = writeCompareReport(out, report, md);
    const json = JSON.parse(readFileSync(paths.json, 'utf8')) as CompareReport;
    expect(json.modes).toHaveLength(3);
    expect(json.msd.geometry).toMatch(/Brain/);
    const text = readFileSync(paths.markdown, 'utf8');
    for (const heading of ['## Phantom and thesis side by side', '## Accuracy: per-class Dice', '## Boundaries: HD95 and normalised surface Dice', '## Context:', '## Cascade: what stage 1 tells stage 2', '## Efficiency: peak memory', '## Planner estimate for the real geometry']) {
      expect(text).toContain(heading);
    }
    expect(text).toMatch(/\| model \| edema \| thesis \| non-enhancing tumou?r \| thesis \| enhancing tumou?r \| thesis \| mean \| thesis \|/);
    expect(text).toMatch(/\| model \| edema HD95 \(mm\) \| edema NSD \(%\) \|/);
    // The thesis's numbers are in the side-by-side tables: mean Dice 72.31 / 52.20 / 68.52, memory 21.5 (×7.4 of patch), 2.9, 2.8.
    expect(text).toMatch(/^\| full \| [^|]+ \| 72\.31 \| .* \| 21\.5 \(×7\.4\) \|/m);
    expect(text).toMatch(/^\| patch \| [^|]+ \| 52\.20 \| .* \| 2\.9 \(×1\.0\) \|/m);
    expect(text).toMatch(/^\| cascade \| [^|]+ \| 68\.52 \| .* \| 2\.8 \(×1\.0\) \|/m);
    expect(text).toContain('thesis full > cascade > patch');
    for (const mode of COMPARE_MODES) expect(text).toMatch(new RegExp(`^\\| ${mode} \\| `, 'm'));
    expect(text).not.toContain('NaN');
  });
});

describe('compare report helpers', () => {
  it('orders modes by score, with ≥ for near ties', () => {
    expect(ordering([{ mode: 'full', score: 0.8 }, { mode: 'patch', score: 0.6 }, { mode: 'cascade', score: 0.798 }], 0.005)).toBe('full ≥ cascade > patch');
    expect(ordering([{ mode: 'full', score: null }, { mode: 'patch', score: 0.5 }, { mode: 'cascade', score: 0.7 }], 0.005)).toBe('cascade > patch');
  });
});
