/**
 * The case progress of `patchfed predict` on a folder: on a terminal the bar is cleared before
 * each per-case line and redrawn under it, and closed with a newline; elsewhere plain lines.
 * Also which outputs a file or folder input gets.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CaseProgress } from '../site-agent/inference/case-progress.ts';
import { planJobs } from '../site-agent/inference/predict-inputs.ts';

function stream(isTTY: boolean) {
  const writes: string[] = [];
  return { isTTY, writes, write: (s: string) => writes.push(s) };
}

describe('predict case progress', () => {
  it('keeps the bar under the per-case lines on a terminal', () => {
    const out = stream(true);
    const err = stream(true);
    const p = new CaseProgress(2, out, err);
    p.start();
    p.caseDone('case-1 done');
    p.caseDone('case-2 done');
    p.close();
    expect(out.writes).toEqual(['case-1 done\n', 'case-2 done\n']);
    expect(err.writes[0]).toMatch(/^\rpredict \[-{24}\] 0\/2 cases ETA \?\x1b\[K$/);
    expect(err.writes[1]).toBe('\r\x1b[K');
    expect(err.writes[2]).toMatch(/^\rpredict \[#{12}-{12}\] 1\/2 cases/);
    expect(err.writes[3]).toBe('\r\x1b[K');
    expect(err.writes[4]).toMatch(/^\rpredict \[#{24}\] 2\/2 cases ETA 0m00s\x1b\[K$/);
    expect(err.writes[5]).toBe('\n');
    expect(err.writes).toHaveLength(6);
  });

  it('writes plain lines (first, last, throttled) when not a terminal', () => {
    const out = stream(false);
    const err = stream(false);
    const p = new CaseProgress(3, out, err, 'predict', 60_000);
    p.start();
    for (const c of ['a', 'b', 'c']) p.caseDone(c);
    p.close();
    expect(err.writes).toEqual([expect.stringMatching(/0\/3 cases/), expect.stringMatching(/3\/3 cases ETA 0m00s\n$/)]);
  });
});

describe('predict inputs', () => {
  it('maps a folder to one <case>.nii.gz per image and refuses ambiguous or unsafe outputs', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'patchfed-jobs-'));
    try {
      const images = path.join(dir, 'imagesTs');
      mkdirSync(images);
      for (const f of ['b.nii', 'a.nii.gz', '.hidden.nii.gz', 'notes.txt']) writeFileSync(path.join(images, f), '');
      expect(planJobs(images, path.join(dir, 'preds')).map((j) => [j.caseId, path.relative(dir, j.output)])).toEqual([
        ['a', 'preds/a.nii.gz'],
        ['b', 'preds/b.nii.gz'],
      ]);
      expect(planJobs(path.join(images, 'b.nii'), path.join(dir, 'seg.nii'))[0]?.output).toBe(path.join(dir, 'seg.nii'));
      expect(planJobs(path.join(images, 'b.nii'), path.join(dir, 'out'))[0]?.output).toBe(path.join(dir, 'out', 'b.nii.gz'));
      expect(() => planJobs(images, images)).toThrow(/is the input folder: predictions would overwrite the images/);
      expect(() => planJobs(images, path.join(dir, 'x.nii.gz'))).toThrow(/a folder input needs an output folder/);
      writeFileSync(path.join(images, 'a.nii'), '');
      expect(() => planJobs(images, path.join(dir, 'preds'))).toThrow(/a\.nii and a\.nii\.gz are the same case 'a'/);
      expect(() => planJobs(path.join(dir, 'missing'), path.join(dir, 'preds'))).toThrow(/no such file or folder/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
