import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The real launcher in a child process: the exit code is exactly what a user's shell sees.
const CLI = fileURLToPath(new URL('../cli/patchfed.js', import.meta.url));
const TIMEOUT = 120_000;

const roots: string[] = [];
afterAll(async () => {
  for (const d of roots) await rm(d, { recursive: true, force: true });
});

function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'phantom', ...args], { timeout: TIMEOUT }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('patchfed phantom (CLI)', () => {
  it('exits 2 with a message naming the option for bad arguments', async () => {
    const out = path.join(tmpdir(), 'patchfed-phantom-never-written');
    const bad: [string[], string][] = [
      [['--task', 'brain', '--out', out, '--cases', '0'], '--cases'],
      [['--task', 'brain', '--out', out, '--shape', '64,64'], '--shape'],
      [['--task', 'foo', '--out', out], '--task'],
      [['--task', 'brain'], '--out'],
      [['--task', 'liver', '--out', out, '--marker', '1.5'], '--marker'],
    ];
    const results = await Promise.all(bad.map(([args]) => run(...args)));
    bad.forEach(([args, option], n) => {
      expect(results[n]!.code, args.join(' ')).toBe(2);
      expect(results[n]!.stderr, args.join(' ')).toContain(option);
    });
    await expect(readdir(out)).rejects.toThrow(/ENOENT/);
  }, TIMEOUT);

  it('writes a dataset (exit 0), prints JSON on request, and refuses to overwrite without --overwrite (exit 1)', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'patchfed-phantom-cli-'));
    roots.push(root);
    const out = path.join(root, 'site');
    const args = ['--task', 'liver', '--out', out, '--cases', '2', '--test-cases', '1', '--shape', '24,24,16', '--seed', '3', '--site-style', '2', '--marker', '1234'];
    const ok = await run(...args, '--json');
    expect(ok.code).toBe(0);
    const result = JSON.parse(ok.stdout);
    expect(result.caseIds).toEqual(['liver_s2_001', 'liver_s2_002']);
    expect(result.testCaseIds).toEqual(['liver_s2_003']);
    expect(result.style.orientation).toBe('LAS');
    expect(result.marker.bytes).toBe(Buffer.from(new Int16Array(8).fill(1234).buffer).toString('hex'));
    const json = JSON.parse(await readFile(path.join(out, 'dataset.json'), 'utf8'));
    expect(json.numTraining).toBe(2);
    expect((await readdir(path.join(out, 'labelsTr'))).sort()).toEqual(['liver_s2_001.nii.gz', 'liver_s2_002.nii.gz']);

    const again = await run(...args);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(out);
    const replaced = await run(...args, '--overwrite');
    expect(replaced.code).toBe(0);
    expect(replaced.stdout).toContain('site style 2');
  }, 3 * TIMEOUT);
});
