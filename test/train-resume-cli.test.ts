/**
 * `patchfed train` interrupted for real: a child process gets SIGINT after its first saved state,
 * exits 130 saying where the state is; `--resume` continues it, gets SIGTERM (143), and a second
 * `--resume` finishes. The model it writes is byte-identical to an uninterrupted run's, the step
 * counts agree, and the finished run removes its state. Resuming with other settings is refused.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerFastCpuBackend } from '../site-agent/kernels/index.ts';
import { REPO_ROOT, runPatchfed, type CliRun } from './cli-fixtures.ts';
import { brainPhantom, TempDirs, writeSiteConfig } from './learning-fixtures.ts';

const STEPS = 120;
const EVERY = 10;
const temp = new TempDirs();
let config: string;
let root: string;

beforeAll(async () => {
  root = await temp.make('patchfed-resume-cli-');
  const data = await brainPhantom(root);
  // A pinned CPU backend: the test is about resuming, whichever optional backends this machine has.
  const backend = (await registerFastCpuBackend()) ? 'cpu-fast' : 'cpu';
  config = await writeSiteConfig(root, { dataset: data, backend, model: { mode: 'patch', base: 4, depth: 2 }, training: { patch: [8, 8, 8], batch: 1, learningRate: 3e-3 } });
});
afterAll(() => temp.cleanup());

const trainArgs = (out: string, ...more: string[]) => ['train', '--config', config, '--steps', String(STEPS), '--out', out, '--checkpoint-every', String(EVERY), ...more];

/** Starts `patchfed …`, sends `signal` once `ready()` holds (polled), and resolves when it exits. */
function runUntil(args: string[], ready: () => boolean, signal: NodeJS.Signals): Promise<CliRun & { signalled: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'cli', 'patchfed.js'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let signalled = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const poll = setInterval(() => {
      if (!signalled && ready()) {
        signalled = true;
        child.kill(signal);
      }
    }, 25);
    child.on('error', (e) => {
      clearInterval(poll);
      reject(e);
    });
    child.on('close', (code) => {
      clearInterval(poll);
      resolve({ code, stdout, stderr, signalled });
    });
  });
}

const mtime = (file: string) => (existsSync(file) ? statSync(file).mtimeMs : 0);

describe('patchfed train --resume', () => {
  it('SIGINT, resume, SIGTERM, resume = one uninterrupted run, byte for byte', async () => {
    const straightDir = path.join(root, 'straight');
    const straight = await runPatchfed(trainArgs(straightDir, '--checkpoint-every', '0'));
    expect(straight.stderr).not.toMatch(/internal error/);
    expect(straight.code).toBe(0);
    expect(existsSync(path.join(straightDir, 'resume-state.pfts'))).toBe(false);

    const outDir = path.join(root, 'interrupted');
    const state = path.join(outDir, 'resume-state.pfts');
    const first = await runUntil(trainArgs(outDir), () => existsSync(state), 'SIGINT');
    expect(first.signalled).toBe(true);
    expect(first.stderr).toMatch(/^SIGINT: stopping after the current step and saving a resumable state/m);
    expect(first.stderr).toMatch(new RegExp(`^patchfed: training interrupted at step (\\d+)/${STEPS} of patch; saved a resumable state to .*interrupted/resume-state\\.pfts — continue with the same command and --resume$`, 'm'));
    expect(first.code).toBe(130);
    const stoppedAt = Number(/interrupted at step (\d+)/.exec(first.stderr)?.[1]);
    expect(stoppedAt).toBeGreaterThanOrEqual(EVERY);
    expect(stoppedAt).toBeLessThan(STEPS);
    expect(existsSync(path.join(outDir, 'patch', 'weights.bin'))).toBe(false); // no half-finished model

    // Other settings than the saved run's are refused, naming the difference.
    const other = await runPatchfed(['train', '--config', config, '--steps', String(STEPS / 2), '--out', outDir, '--resume']);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(new RegExp(`cannot resume from .*resume-state\\.pfts: stepsPerStage was ${STEPS} when the state was saved, now ${STEPS / 2}`));

    const savedAt = mtime(state);
    const second = await runUntil(trainArgs(outDir, '--resume'), () => mtime(state) > savedAt, 'SIGTERM');
    expect(second.stderr).toMatch(new RegExp(`^resume: resuming from .*: 0 stage\\(s\\) done, continuing with patch at step ${stoppedAt}/${STEPS}$`, 'm'));
    expect(second.code).toBe(143);
    const stoppedAgain = Number(/interrupted at step (\d+)/.exec(second.stderr)?.[1]);
    expect(stoppedAgain).toBeGreaterThan(stoppedAt);

    const last = await runPatchfed([...trainArgs(outDir, '--resume')]);
    expect(last.stderr).not.toMatch(/internal error/);
    expect(last.code).toBe(0);
    expect(existsSync(state)).toBe(false); // a finished run removes its state

    const weights = (dir: string) => readFile(path.join(dir, 'patch', 'weights.bin'));
    expect(Buffer.compare(await weights(outDir), await weights(straightDir))).toBe(0);
    const report = async (dir: string) => JSON.parse(await readFile(path.join(dir, 'report.json'), 'utf8'));
    const [a, b] = [await report(straightDir), await report(outDir)];
    expect(b.stages.map((s: { steps: number }) => s.steps)).toEqual([STEPS]);
    expect(b.stages[0].finalLoss).toBe(a.stages[0].finalLoss);
    expect(b.stages[0].bestStep).toBe(a.stages[0].bestStep);
    expect(b.test.dice).toEqual(a.test.dice);
  }, 240_000);

  it('says plainly when there is nothing to resume', async () => {
    const r = await runPatchfed(['train', '--config', config, '--out', path.join(root, 'never-ran'), '--resume']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^patchfed: no resumable state at .*never-ran\/resume-state\.pfts: nothing to resume/m);
  }, 60_000);
});
