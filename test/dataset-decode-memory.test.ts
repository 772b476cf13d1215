/**
 * Issue 2's memory bound: decoding one volume (gunzip, NIfTI parse, label check, normalisation,
 * channels-first transpose) must not need more than ~3× the decoded case in memory. Measured in
 * a child process as the rise of peak RSS above the RSS just before the decode.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './cli-fixtures.ts';
import { goodCase, tempDir, writeDataset, type FixtureDataset } from './dataset-fixtures.ts';

const run = promisify(execFile);
let ds: FixtureDataset;

beforeAll(async () => {
  ds = await tempDir();
  // 2 channels of 192×192×96 float32: a 28 MiB decoded image, big enough that allocator and
  // heap noise (a few MiB) cannot hide a fourth copy.
  await writeDataset(ds.dir, { cases: [goodCase('warm', [8, 8, 8], 1), goodCase('big', [192, 192, 96], 2)] });
}, 120_000);
afterAll(() => ds?.cleanup());

describe('decoding one case', () => {
  it('peaks at no more than ~3× the decoded size above the resting process', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', path.join(REPO_ROOT, 'test', 'dataset-decode-memory-child.ts'), ds.dir, 'warm', 'big'],
      { cwd: REPO_ROOT, maxBuffer: 1 << 20 },
    );
    const m = JSON.parse(stdout.trim().split('\n').at(-1)!) as { rssBefore: number; peakAfter: number; decodedBytes: number };
    const extra = m.peakAfter - m.rssBefore;
    console.log(`decode of ${(m.decodedBytes / 2 ** 20).toFixed(1)} MiB: peak +${(extra / 2 ** 20).toFixed(1)} MiB (${(extra / m.decodedBytes).toFixed(2)}×)`);
    expect(m.decodedBytes).toBe(2 * 192 * 192 * 96 * 4 + 192 * 192 * 96);
    // The decoded case itself is still held (1×); the bound is on the whole transient peak.
    expect(extra).toBeGreaterThan(m.decodedBytes * 0.9);
    expect(extra).toBeLessThanOrEqual(m.decodedBytes * 3.2);
  }, 120_000);
});
