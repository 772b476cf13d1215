/**
 * Issue 11, item 11: NIfTI reading is bounded by a memory budget, not by a voxel count alone.
 * A ~0.2 MB .nii.gz of a scaled int16 volume (512×512×200: 100 MB raw, 200 MB as float32) under a
 * 32 MB budget:
 *  - readNifti refuses it (NIFTI_TOO_LARGE naming the budget) before allocating: the peak RSS of
 *    the reading process rises by far less than the volume would take;
 *  - inspectNiftiFile computes the exact statistics in one streaming pass, its peak RSS rise
 *    (gunzip buffers, value batches, garbage not yet collected) staying under 2× the budget, far
 *    below even the raw voxels (a materialised scaled copy would add 200 MB);
 *  - `patchfed inspect --max-memory` gives the same, and refuses a budget below its minimum;
 *  - a site's dataset scan (memoryBudgetMB) lists a case too big for the budget as a problem
 *    with the reason, and keeps the cases that fit.
 * Each measurement runs in a child process (hardening-nifti-memory-child.ts). ~15 s.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectMsdDataset } from '../site-agent/data/inspect-dataset.ts';
import { REPO_ROOT, runPatchfed } from './cli-fixtures.ts';
import { goodCase, tempDir, writeDataset } from './dataset-fixtures.ts';
import { expectedStats, writeSparseNifti, type SparseNifti } from './nifti-memory-fixtures.ts';

const run = promisify(execFile);
const MiB = 2 ** 20;
const BIG: SparseNifti = {
  dim: [3, 512, 512, 200],
  datatype: 'int16',
  slope: 2,
  inter: 1,
  values: [
    { index: 0, value: 7 },
    { index: 123_456, value: -300 },
    { index: 512 * 512 * 200 - 1, value: 1000 },
  ],
};
const WARM: SparseNifti = { ...BIG, dim: [3, 8, 8, 8], values: [{ index: 3, value: 5 }] };
const BUDGET_MB = 32;

let dir = '';
let big = '';
let warm = '';
let voxels = 0;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'patchfed-nifti-budget-'));
  big = path.join(dir, 'big-scaled.nii.gz');
  warm = path.join(dir, 'warm.nii.gz');
  voxels = (await writeSparseNifti(big, BIG)).voxels;
  await writeSparseNifti(warm, WARM);
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function measure(mode: 'read' | 'inspect'): Promise<{ ok: boolean; code?: string; message?: string; stats?: { min: number; max: number; mean: number }; extra: number }> {
  const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(REPO_ROOT, 'test', 'hardening-nifti-memory-child.ts'), mode, warm, big, String(BUDGET_MB)], {
    cwd: REPO_ROOT,
    maxBuffer: 1 << 20,
  });
  const m = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { ok: boolean; rssBefore: number; peakAfter: number };
  return { ...m, extra: m.peakAfter - m.rssBefore };
}

describe('NIfTI reading under a memory budget', () => {
  it('the test file is small on disk and big in memory', () => {
    expect(statSync(big).size).toBeLessThan(1 * MiB);
    expect(voxels * 4).toBeGreaterThan(3 * BUDGET_MB * MiB);
  });

  it('readNifti refuses a scaled volume over the budget before allocating it', async () => {
    const m = await measure('read');
    console.log(`readNifti, ${BUDGET_MB} MB budget: ${m.code}; peak RSS +${(m.extra / MiB).toFixed(1)} MB`);
    expect(m.ok).toBe(false);
    expect(m.code).toBe('NIFTI_TOO_LARGE');
    expect(m.message).toMatch(/big-scaled\.nii\.gz: decoding it needs 2\d\d MB of memory \(512×512×200 int16, scaled to float32\), over the memory budget of 32 MB \(--max-memory, or the site's memoryBudgetMB\)/);
    expect(m.extra).toBeLessThan(16 * MiB);
  }, 60_000);

  it('inspectNiftiFile streams: exact statistics, peak RSS rise bounded (not the volume)', async () => {
    const m = await measure('inspect');
    console.log(`inspectNiftiFile of ${((voxels * 4) / MiB).toFixed(0)} MB as float32, ${BUDGET_MB} MB budget: peak RSS +${(m.extra / MiB).toFixed(1)} MB`);
    expect(m.ok).toBe(true);
    const want = expectedStats(BIG, voxels);
    expect(m.stats?.min).toBe(want.min);
    expect(m.stats?.max).toBe(want.max);
    expect(m.stats?.mean).toBeCloseTo(want.mean, 9);
    expect(m.extra).toBeLessThan(2 * BUDGET_MB * MiB);
    expect(m.extra).toBeLessThan(voxels * 2); // not even the raw int16 voxels were held at once
  }, 60_000);

  it('patchfed inspect --max-memory: the same statistics; a budget below the minimum is a usage error', async () => {
    const ok = await runPatchfed(['inspect', big, '--max-memory', String(BUDGET_MB), '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    const report = JSON.parse(ok.stdout) as { stats: { min: number; max: number } };
    expect(report.stats).toMatchObject({ min: expectedStats(BIG, voxels).min, max: expectedStats(BIG, voxels).max });
    const bad = await runPatchfed(['inspect', big, '--max-memory', '1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/--max-memory/);
  }, 60_000);

  it('a dataset scan under the site\'s budget lists a case too big for it, with the reason, and keeps the rest', async () => {
    const ds = await tempDir();
    try {
      // 96×96×64×2 float32 + labels: ~18 MB decoded, ~60 MB at the estimated peak; 8×8×8 fits anywhere.
      await writeDataset(ds.dir, { cases: [goodCase('small', [8, 8, 8], 1), goodCase('large', [96, 96, 64], 2)] });
      const report = await inspectMsdDataset(ds.dir, { maxMemoryMB: 16 });
      expect(report.usableCases).toBe(1);
      const problem = report.problems.find((p) => p.caseId === 'large');
      expect(problem?.reason).toMatch(/^decoding and preprocessing this 96x96x64x2 case needs about \d+ MB of memory, over the memory budget of 16 MB \(memoryBudgetMB/);
      expect((await inspectMsdDataset(ds.dir, { maxMemoryMB: 512 })).usableCases).toBe(2);
    } finally {
      await ds.cleanup();
    }
  }, 60_000);
});
