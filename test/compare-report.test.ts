/**
 * `patchfed compare` end to end on a tiny phantom (few steps): the report's structure (JSON and
 * markdown), and that its numbers are real measurements — peak memory > 0 and close to the
 * estimate, Dice in [0, 1] or null, inference time > 0 — plus the MSD planner table.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMPARE_MODES, runCompare, writeCompareReport, type CompareReport } from '../site-agent/run/compare.ts';
import { formatCompareMarkdown } from '../site-agent/run/compare-report.ts';

const out = mkdtempSync(join(tmpdir(), 'patchfed-compare-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('compare (tiny brain phantom)', () => {
  let report: CompareReport;

  it('trains the three modes on one split and reports real numbers', { timeout: 120_000 }, async () => {
    report = await runCompare({ task: 'brain', outDir: out, steps: 3, cases: 5, shape: [16, 16, 16], slab: 8, seed: 2, backend: 'auto', progress: null });
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
    }
    const [full, patch, cascade] = report.modes;
    expect(cascade!.stages.map((s) => s.stage)).toEqual(['cascade-stage1', 'cascade-stage2']);
    expect(patch!.stages[0]!.patch).toEqual([16, 16, 8]);
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
    expect(text).toContain('## Accuracy: per-class Dice');
    expect(text).toContain('## Efficiency: peak memory');
    expect(text).toContain('## Planner estimate for the real geometry');
    expect(text).toMatch(/\| edema \| non-enhancing tumou?r \| enhancing tumou?r \| mean \|/);
    for (const mode of COMPARE_MODES) expect(text).toMatch(new RegExp(`^\\| ${mode} \\| `, 'm'));
    expect(text).not.toContain('NaN');
  });
});
