/**
 * Issue 11, item 6 on a real full file system: the state directory on a small tmpfs, filled up
 * while a `patchfed coordinator` process runs a federation (in-process sites, fake training).
 *  - /healthz turns 503 with the reason (ENOSPC) within the probe interval, and back to 200 once
 *    space is freed; the experiment then completes and every stored checkpoint verifies, with the
 *    state DB passing integrity_check (nothing written before was damaged);
 *  - with the disk full for longer than --storage-outage-limit the process exits with status 1
 *    and one line saying why (for its supervisor); restarted with space back, it carries on.
 * Needs root (mount -t tmpfs): skipped, with the reason, where mounting is not possible.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StateDb } from '../coordinator/store/index.ts';
import { fakeMetrics, fakeUpdate, freePort, makeFederation, spawnCli, startSite, type CliProcess, type FakeHandler, type Federation, type TestSite } from './federation-fixtures.ts';
import { verifyStoredCheckpoints } from './hardening-fixtures.ts';

/** Mounts a tmpfs of `sizeMB` at `dir`; null when this machine does not allow it (not root, no tmpfs). */
function mountTmpfs(dir: string, sizeMB: number): string | null {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMB}m`, 'tmpfs', dir], { stdio: 'pipe' });
    return null;
  } catch (e) {
    return `cannot mount a tmpfs here (${String((e as { stderr?: Buffer }).stderr ?? e).trim().split('\n')[0]})`;
  }
}

const probeDir = mkdtempSync(join(tmpdir(), 'patchfed-tmpfs-probe-'));
const skipReason = mountTmpfs(probeDir, 1);
if (skipReason === null) execFileSync('umount', [probeDir]);
rmSync(probeDir, { recursive: true, force: true });

let fed: Federation | null = null;
let mounted: string | null = null;
let sites: TestSite[] = [];
const processes: CliProcess[] = [];

afterEach(async () => {
  await Promise.all(sites.map((s) => s.client.stop()));
  for (const p of processes.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }
  if (mounted) execFileSync('umount', [mounted]);
  mounted = null;
  fed?.cleanup();
  fed = null;
  sites = [];
});

/** Fills the file system holding `dir` with one file until it refuses more; returns its path. */
function fillDisk(dir: string): string {
  const file = join(dir, 'filler.bin');
  const fd = openSync(file, 'w');
  const block = new Uint8Array(64 * 1024).fill(1);
  try {
    for (;;) writeSync(fd, block);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
  return file;
}

async function healthz(url: string): Promise<{ status: number; body: { ok: boolean; problems?: { code: string; message: string }[]; lastCompletedRound: number | null } } | null> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
    return { status: res.status, body: (await res.json()) as { ok: boolean; lastCompletedRound: number | null } };
  } catch {
    return null;
  }
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.skipIf(skipReason !== null)(`a full file system under the state directory${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('is reported by /healthz with the reason, recovered from when space is back, and fatal (exit 1, one line) after --storage-outage-limit', async () => {
    const port = await freePort();
    fed = makeFederation({ port, sites: ['site-a', 'site-b'], experiment: { rounds: 3, minSites: 2, roundDeadlineSeconds: 600 } });
    const stateDir = join(fed.dir, 'state');
    mountTmpfs(stateDir, 16);
    mounted = stateDir;
    const url = `http://127.0.0.1:${port}`;
    const args = ['coordinator', '--config', fed.configPath, '--storage-outage-limit', '60'];
    let coordinator = spawnCli(args, 'coordinator');
    processes.push(coordinator);
    await coordinator.waitForLine(/patchfed coordinator listening on/);

    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const arrived: Promise<void>[] = [];
    sites = ['site-a', 'site-b'].map((id, i) => {
      let reached!: () => void;
      arrived.push(new Promise<void>((r) => (reached = r)));
      const handler: FakeHandler = async (task) => {
        if (task.round === 2) {
          reached();
          await released;
        }
        return { update: fakeUpdate(task.global, i, task.round), samples: 10, metrics: fakeMetrics() };
      };
      return startSite(fed!, url, id, { handler });
    });
    await Promise.all(arrived);

    // Disk full while round 2 trains: the storage probe notices, /healthz says so.
    const filler = fillDisk(stateDir);
    const full = await until('/healthz 503', async () => {
      const h = await healthz(url);
      return h?.status === 503 ? h : null;
    });
    expect(full.body.ok).toBe(false);
    expect(full.body.problems?.some((p) => p.code === 'ENOSPC' && /disk is full|ENOSPC/.test(p.message))).toBe(true);
    expect(full.body.lastCompletedRound).toBe(1);

    // Space back: healthy again, and the experiment completes.
    rmSync(filler);
    await until('/healthz 200', async () => (await healthz(url))?.status === 200);
    release();
    await coordinator.waitForLine(/experiment complete after round 3/, 60_000);
    coordinator.child.kill('SIGTERM');
    expect(await coordinator.exited).toMatchObject({ code: 0 });

    const check = verifyStoredCheckpoints(stateDir, fed.coordinatorKeys);
    expect(check.problems).toEqual([]);
    expect(check.verified).toHaveLength(4);
    expect(StateDb.checkIntegrity(join(stateDir, 'state.db'), 'full')).toBeNull();

    // Full for longer than the limit: exit 1 with one line for the supervisor.
    coordinator = spawnCli(['coordinator', '--config', fed.configPath, '--storage-outage-limit', '2'], 'coordinator-2');
    processes.push(coordinator);
    await coordinator.waitForLine(/patchfed coordinator listening on/);
    const filler2 = fillDisk(stateDir);
    const exit = await coordinator.exited;
    expect(exit.code).toBe(1);
    const fatal = coordinator.lines.filter((l) => l.startsWith('patchfed coordinator: fatal:'));
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toMatch(/storage unavailable for \d+ s \(limit 2 s\).*(disk is full|ENOSPC)/);

    // Restarted with space back, it resumes where it was.
    rmSync(filler2);
    coordinator = spawnCli(args, 'coordinator-3');
    processes.push(coordinator);
    await coordinator.waitForLine(/last completed round 3\b/);
    expect((await healthz(url))?.status).toBe(200);
  }, 150_000);
});
