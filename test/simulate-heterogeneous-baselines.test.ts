/**
 * `simulate --baselines` per-site table: each site's local-only, federated and pooled mean Dice,
 * the federated model as a percentage of pooled, and the two targets (≥ 98% of pooled and better
 * than local-only at every site). Pure formatting over a report; no training.
 */
import { describe, expect, it } from 'vitest';
import { compareBaselines, formatBaselineTable } from '../cli/simulate/baseline-table.ts';
import type { LabelDice, SimulationReport } from '../cli/simulate/report.ts';

const labels = ['edema', 'core'];
const d = (a: number, b: number): LabelDice => ({ edema: a, core: b });

function report(federated: Record<string, LabelDice>, local: Record<string, LabelDice>, pooled: Record<string, LabelDice>): SimulationReport {
  const result = (sites: Record<string, LabelDice>) => ({ sites, meanDice: {}, meanOverLabels: 0, steps: 1, wallMs: 1 });
  return {
    format: 'patchfed-simulate/1',
    createdAt: '2026-01-01T00:00:00Z',
    runDir: '/tmp/x',
    experiment: { id: 'x', task: 'brain', mode: 'patch', preset: 'cpu-small', strategy: 'fedprox', rounds: 1, localSteps: 1, learningRate: 0.01, foregroundRate: 1 },
    labels,
    sites: ['site-a', 'site-b'].map((id, i) => ({ id, memoryBudgetMB: 80, siteStyle: i, orientation: 'RAS', patch: null, batch: null, backend: null })),
    initial: { globalDice: null, globalMeanDice: null, checkpointSha256: null },
    rounds: [],
    baselines: { federated: { sites: federated, meanDice: {}, meanOverLabels: 0 }, localOnly: result(local), pooled: result(pooled) },
    injected: {},
    summary: { status: 'complete', message: '', wallTimeMs: 0, roundsCompleted: 1, initialMeanDice: null, finalMeanDice: null, improved: null, totalBytesMoved: 0, finalCheckpointSha256: null },
  };
}

describe('simulate --baselines per-site table', () => {
  it('states the federated share of pooled per site and over the sites, and whether the targets hold', () => {
    const r = report({ 'site-a': d(0.98, 0.96), 'site-b': d(0.9, 0.9) }, { 'site-a': d(0.9, 0.8), 'site-b': d(0.92, 0.9) }, { 'site-a': d(0.99, 0.99), 'site-b': d(0.95, 0.95) });
    const c = compareBaselines(r)!;
    expect(c.rows.map((x) => x.site)).toEqual(['site-a', 'site-b']);
    expect(c.rows[0]!.shareOfPooled).toBeCloseTo(0.97 / 0.99, 10);
    expect(c.rows[1]!.shareOfPooled).toBeCloseTo(0.9 / 0.95, 10);
    expect(c.mean.federated).toBeCloseTo((0.97 + 0.9) / 2, 10);
    expect(c.mean.shareOfPooled).toBeCloseTo((0.97 + 0.9) / (0.99 + 0.95), 10);
    expect(c.everySiteReachesTarget).toBe(false); // 98.0% and 94.7%
    expect(c.everySiteBeatsLocalOnly).toBe(false); // site-b: 0.900 vs 0.910
    const text = formatBaselineTable(r).join('\n');
    expect(text).toContain('federated = fedprox');
    expect(text).toMatch(/site-a\s+0\s+0\.850\s+0\.970\s+0\.990\s+98\.0%\s+\+0\.120/);
    expect(text).toMatch(/site-b\s+1\s+0\.910\s+0\.900\s+0\.950\s+94\.7%\s+-0\.010/);
    expect(text).toContain('at every site: NO; better than local-only at every site: NO');
  });

  it('says yes when every site reaches 98% of pooled and beats local-only; prints nothing without baselines', () => {
    const r = report({ 'site-a': d(0.99, 0.97), 'site-b': d(0.95, 0.95) }, { 'site-a': d(0.9, 0.8), 'site-b': d(0.9, 0.9) }, { 'site-a': d(0.99, 0.99), 'site-b': d(0.96, 0.96) });
    const c = compareBaselines(r)!;
    expect(c.everySiteReachesTarget).toBe(true);
    expect(c.everySiteBeatsLocalOnly).toBe(true);
    expect(formatBaselineTable(r).join('\n')).toContain('at every site: yes; better than local-only at every site: yes');
    const { baselines: _omit, ...without } = r;
    expect(formatBaselineTable(without)).toEqual([]);
  });
});
