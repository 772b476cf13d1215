/**
 * `patchfed simulate` end to end, as a user runs it: real coordinator and site processes on
 * loopback, tiny liver phantoms. The report has the documented keys with values that match the
 * coordinator's stored checkpoints; training loss goes down across rounds; Ctrl-C stops every
 * child process and still writes a (partial) report.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = 'cli/patchfed.js';
const work = mkdtempSync(join(tmpdir(), 'patchfed-simulate-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// The tiny preset keeps this fast; `npm start`'s defaults (cpu-small, 60 steps) are checked in simulate-report.test.ts.
const SMALL = ['--sites', '2', '--task', 'liver', '--cases', '4', '--shape', '24,24,16', '--budgets', '64,80', '--lr', '0.01', '--preset', 'tiny'];

/** PIDs of processes whose command line mentions `dir` (children of a simulation). */
function processesUsing(dir: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) out.push(Number(pid));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

describe('patchfed simulate', () => {
  it('refuses bad options with a message naming the option', () => {
    const bad = spawnSync(process.execPath, [CLI, 'simulate', '--drop-site', 'site-b', '--run-dir', join(work, 'never')], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--drop-site must look like site-b@2');
    const unknown = spawnSync(process.execPath, [CLI, 'simulate', ...SMALL, '--drop-site', 'site-q@1', '--run-dir', join(work, 'unknown')], { encoding: 'utf8' });
    expect(unknown.status).not.toBe(0);
    expect(unknown.stderr).toContain("--drop-site names 'site-q'");
    const styles = spawnSync(process.execPath, [CLI, 'simulate', '--site-styles', '2,x', '--run-dir', join(work, 'never')], { encoding: 'utf8' });
    expect(styles.status).toBe(2);
    expect(styles.stderr).toContain("--site-styles must be whole numbers");
    const fg = spawnSync(process.execPath, [CLI, 'simulate', '--foreground-rate', '1.5', '--run-dir', join(work, 'never')], { encoding: 'utf8' });
    expect(fg.status).toBe(2);
    expect(fg.stderr).toContain('--foreground-rate must be between 0 and 1');
    expect(processesUsing(join(work, 'unknown'))).toEqual([]);
  });

  it('runs a federation of site processes and writes the report', { timeout: 240_000 }, () => {
    const runDir = join(work, 'run');
    const reportPath = join(work, 'custom', 'report.json');
    const res = spawnSync(process.execPath, [CLI, 'simulate', ...SMALL, '--rounds', '3', '--steps', '6', '--run-dir', runDir, '--report', reportPath], {
      encoding: 'utf8',
      timeout: 230_000,
    });
    expect(res.status, res.stdout + res.stderr).toBe(0);
    const token = JSON.parse(readFileSync(join(runDir, 'coordinator.json'), 'utf8')).dashboardToken as string;
    expect(res.stdout).toMatch(new RegExp(`Dashboard: http://127\\.0\\.0\\.1:\\d+/\\?token=${token}`));
    expect(res.stdout).toMatch(/round 3\/3: 2\/2 sites aggregated/);
    expect(existsSync(join(runDir, 'report.json'))).toBe(false); // --report chose another path

    const report = JSON.parse(readFileSync(reportPath, 'utf8'));
    expect(report.summary.status).toBe('complete');
    expect(report.labels).toEqual(['liver', 'cancer']);
    expect(report.rounds.map((r: { round: number }) => r.round)).toEqual([1, 2, 3]);
    for (const r of report.rounds) {
      expect(Object.keys(r.globalDice).sort()).toEqual(['cancer', 'liver']);
      expect(r.durationMs).toBeGreaterThan(0);
      // The named checkpoint is the one the coordinator stored for the round.
      const artifact = readFileSync(join(runDir, 'state', 'checkpoints', `v${String(r.checkpointVersion).padStart(6, '0')}`, 'weights.pfw'));
      expect(r.checkpointSha256).toBe(createHash('sha256').update(artifact).digest('hex'));
      expect(r.sites.map((s: { id: string }) => s.id)).toEqual(['site-a', 'site-b']);
      for (const s of r.sites) {
        expect(s.accepted).toBe(true);
        expect(s.samples).toBe(2); // 4 cases: 2 train / 1 validation / 1 test
        expect(s.bytesSent).toBeGreaterThan(0);
        expect(s.bytesReceived).toBeGreaterThan(0);
        expect(Object.keys(s.dice).sort()).toEqual(['cancer', 'liver']);
        // auto: tensorflow where `patchfed setup tensorflow` built it (CI does), else cpu-fast / cpu.
        expect(s.backend).toMatch(/^(cpu|cpu-fast|tensorflow)$/);
      }
    }
    // Different memory budgets, different patches, one aggregated model.
    const patches = report.rounds[0].sites.map((s: { patch: number[] }) => s.patch.join('x'));
    expect(new Set(patches).size).toBe(2);
    // The sites learn: mean training loss falls from round 1 to round 3.
    const meanLoss = (r: { sites: { loss: number }[] }) => r.sites.reduce((a, s) => a + s.loss, 0) / r.sites.length;
    expect(meanLoss(report.rounds[2])).toBeLessThan(meanLoss(report.rounds[0]));
    expect(report.summary.finalCheckpointSha256).toBe(report.rounds[2].checkpointSha256);
    expect(processesUsing(runDir)).toEqual([]);
  });

  it('stops every child process on Ctrl-C and writes a partial report', { timeout: 120_000 }, async () => {
    const runDir = join(work, 'interrupted');
    // Its own process group, like a shell job: Ctrl-C in a terminal signals the whole group.
    const child = spawn(process.execPath, [CLI, 'simulate', ...SMALL, '--rounds', '50', '--steps', '3', '--run-dir', runDir], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no round started within 90 s:\n${stdout}`)), 90_000);
      const check = () => {
        if (/round 1\/50 started/.test(stdout)) {
          clearTimeout(timer);
          resolve();
        } else setTimeout(check, 200);
      };
      check();
    });
    expect(processesUsing(runDir).length).toBeGreaterThanOrEqual(3); // coordinator + 2 sites
    process.kill(-child.pid!, 'SIGINT');
    expect(await exited).toBe(130);
    const report = JSON.parse(readFileSync(join(runDir, 'report.json'), 'utf8'));
    expect(report.summary.status).toBe('interrupted');
    expect(processesUsing(runDir)).toEqual([]);
    // The coordinator stopped cleanly (one signal), not by the second-signal shortcut.
    expect(readFileSync(join(runDir, 'logs', 'coordinator.log'), 'utf8')).toContain('coordinator stopped');
  });
});
