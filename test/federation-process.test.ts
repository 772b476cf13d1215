/**
 * The commands as real processes: `patchfed coordinator --config` and `patchfed site --config`.
 *  - A coordinator killed with SIGKILL in the middle of a round and started again resumes at the
 *    last completed round, with every stored checkpoint byte-identical; the sites (in-process
 *    clients here) reconnect on their own and the experiment completes with the right arithmetic.
 *  - Two `patchfed site` daemons train on their own tiny phantoms to the end of an experiment; one
 *    is stopped with SIGTERM mid-round (exits 0, no half-written files) and, started again, picks
 *    up the round it left and ends with the same final checkpoint as everyone.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StateDb } from '../coordinator/store/index.ts';
import type { ClientEvents, RoundTask } from '../site-agent/daemon/client.ts';
import { generatePhantomDataset } from '../site-agent/phantom/index.ts';
import {
  fakeMetrics,
  fakeUpdate,
  freePort,
  jsonLine,
  makeFederation,
  relativeError,
  spawnCli,
  startSite,
  waitForEvent,
  weightedMean,
  writeSiteConfig,
  type CliProcess,
  type Federation,
  type TestSite,
  tinyLiverExperiment,
} from './federation-fixtures.ts';

let fed: Federation | null = null;
let sites: TestSite[] = [];
const processes: CliProcess[] = [];

afterEach(async () => {
  await Promise.all(sites.map((s) => s.client.stop()));
  for (const p of processes.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }
  fed?.cleanup();
  fed = null;
  sites = [];
});

function startProcess(args: string[], name: string): CliProcess {
  const p = spawnCli(args, name);
  processes.push(p);
  return p;
}

/** sha256 of every file under `dir`, by relative path. */
function fileHashes(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}

/** Every file under `dir` (relative paths). */
function listFiles(dir: string): string[] {
  return [...fileHashes(dir).keys()];
}

describe('coordinator and site as processes', () => {
  it('a coordinator SIGKILLed mid-round resumes from the last completed round with identical stored checkpoints', async () => {
    const port = await freePort();
    fed = makeFederation({ port, experiment: { rounds: 3, minSites: 3, roundDeadlineSeconds: 60, startupGraceSeconds: 30 } });
    const url = `http://127.0.0.1:${port}`;
    const args = ['coordinator', '--config', fed.configPath, '--log-level', 'debug'];
    let coordinator = startProcess(args, 'coordinator');
    await coordinator.waitForLine(/patchfed coordinator listening on/);

    // Round 2 "trains" until released, so the coordinator can be killed while it is open.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const ids = [...fed.siteKeys.keys()];
    const round2Started = ids.map(() => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    });
    sites = ids.map((id, i) =>
      startSite(fed!, url, id, {
        handler: async (task: RoundTask, ctl) => {
          if (task.round === 2) {
            round2Started[i]!.resolve();
            await Promise.race([released, new Promise((_, reject) => ctl.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }))]);
          }
          return { update: fakeUpdate(task.global, i, task.round), samples: 10 * (i + 1), metrics: fakeMetrics() };
        },
      }),
    );
    const completes = sites.map((s) => waitForEvent<ClientEvents['complete']>(s.client, 'complete', () => true, 90_000));
    await Promise.all(round2Started.map((d) => d.promise));

    const checkpointsDir = join(fed.dir, 'state', 'checkpoints');
    const before = fileHashes(checkpointsDir);
    expect([...before.keys()].filter((f) => f.endsWith('weights.pfw'))).toHaveLength(2); // rounds 0 and 1
    expect(await fetch(`${url}/healthz`).then((r) => r.json())).toMatchObject({ lastCompletedRound: 1 });

    coordinator.child.kill('SIGKILL');
    expect(await coordinator.exited).toMatchObject({ signal: 'SIGKILL' });
    coordinator = startProcess(args, 'coordinator-2');
    await coordinator.waitForLine(/last completed round 1\b/);
    // Recovery left every completed checkpoint exactly as it was.
    const afterRestart = fileHashes(checkpointsDir);
    for (const [file, hash] of before) expect(afterRestart.get(file), file).toBe(hash);
    release();

    const finals = await Promise.all(completes);
    await coordinator.waitForLine(/experiment complete after round 3/);
    expect(new Set(finals.map((f) => f.checkpointSha256)).size).toBe(1);
    const final = fileHashes(checkpointsDir);
    for (const [file, hash] of before) expect(final.get(file), file).toBe(hash);
    expect([...final.keys()].filter((f) => f.endsWith('weights.pfw'))).toHaveLength(4);

    // Each round's global is the weighted mean of that round's updates, across the restart too.
    for (const round of [1, 2, 3]) {
      const base = sites[0]!.tasks.find((t) => t.round === round)!.global;
      const after = round < 3 ? sites[0]!.tasks.find((t) => t.round === round + 1)!.global : finals[0]!.global;
      const expected = weightedMean(ids.map((_, i) => ({ update: fakeUpdate(base, i, round), samples: 10 * (i + 1) })));
      expect(relativeError(after.values, expected)).toBeLessThan(1e-6);
    }
    // Every site trained round 2 once: the restarted coordinator's new attempt took the same work.
    for (const s of sites) expect(s.tasks.filter((t) => t.round === 2)).toHaveLength(1);

    coordinator.child.kill('SIGTERM');
    expect(await coordinator.exited).toMatchObject({ code: 0 });
    const db = StateDb.open(join(fed.dir, 'state', 'state.db'));
    try {
      const round2 = db.listRounds('fed-test').filter((r) => r.round === 2);
      expect(round2.map((r) => r.status)).toEqual(['failed', 'complete']);
      expect(round2[0]!.failureReason).toMatch(/interrupt|restart|crash/i);
    } finally {
      db.close();
    }
  }, 120_000);

  it('patchfed site daemons train to the end; one stopped by SIGTERM mid-round exits cleanly and catches up when restarted', async () => {
    const port = await freePort();
    const ids = ['site-a', 'site-b'];
    fed = makeFederation({
      port,
      sites: ids,
      experiment: tinyLiverExperiment({ localSteps: 4 }),
    });
    const url = `http://127.0.0.1:${port}`;
    const siteConfigs = new Map<string, string>();
    for (const [i, id] of ids.entries()) {
      const phantom = await generatePhantomDataset({ task: 'liver', cases: 4, testCases: 0, shape: [24, 24, 16], seed: 7 + i, siteStyle: i, out: join(fed.dir, `${id}-data`) });
      siteConfigs.set(id, writeSiteConfig(fed, id, url, { dataset: phantom.dir, memoryBudgetMB: 60 + 60 * i, backend: 'auto', logFile: `${id}-logs/site.log` }));
    }
    // JSON lines on the console (the default is the human format): the test reads the events from them.
    const coordinator = startProcess(['coordinator', '--config', fed.configPath, '--log-level', 'debug', '--log-format', 'json'], 'coordinator');
    await coordinator.waitForLine(/patchfed coordinator listening on/);
    const siteA = startProcess(['site', '--config', siteConfigs.get('site-a')!], 'site-a');
    let siteB = startProcess(['site', '--config', siteConfigs.get('site-b')!], 'site-b');

    // As soon as the coordinator hears site-b is training round 1, stop site-b with SIGTERM.
    const isStatus = (round: number, phase: string) => (line: string) => {
      const j = jsonLine(line);
      return j?.event === 'site-status' && j.siteId === 'site-b' && j.round === round && j.phase === phase;
    };
    await coordinator.waitForLine(isStatus(1, 'training'), 90_000);
    siteB.child.kill('SIGTERM');
    expect(await siteB.exited).toEqual({ code: 0, signal: null });
    const siteBDir = fed.dir;
    const leftovers = listFiles(siteBDir).filter((f) => /(^|\/)\.tmp|\.tmp$|\.part$|\.partial$/.test(f) && !f.startsWith('state/'));
    expect(leftovers).toEqual([]);
    const logLines = readFileSync(join(fed.dir, 'site-b-logs', 'site.log'), 'utf8').split('\n');
    expect(logLines.pop()).toBe(''); // ends with a complete line
    for (const line of logLines) expect(jsonLine(line), line).not.toBeNull();
    expect(logLines.some((l) => /stopping \(SIGTERM\)/.test(l))).toBe(true);
    await coordinator.waitForLine((l) => jsonLine(l)?.event === 'site-offline' && jsonLine(l)?.siteId === 'site-b');

    // Back again: it gets the open round's task (same global model) and the experiment completes.
    siteB = startProcess(['site', '--config', siteConfigs.get('site-b')!], 'site-b-2');
    const complete = await coordinator.waitForLine((l) => jsonLine(l)?.event === 'experiment-complete', 150_000);
    const finalSha = jsonLine(complete)!.sha256 as string;
    const rounds = coordinator.lines.map(jsonLine).filter((j) => j?.event === 'round-complete');
    expect(rounds.map((r) => [r!.round, r!.accepted])).toEqual([
      [1, ids],
      [2, ids],
    ]);
    // Both daemons verified and hold the final checkpoint.
    for (const id of ids) {
      const log = join(fed.dir, `${id}-logs`, 'site.log');
      const until = Date.now() + 30_000;
      let got: string | undefined;
      while (!got && Date.now() < until) {
        got = readFileSync(log, 'utf8')
          .split('\n')
          .map(jsonLine)
          .find((j) => j?.msg === 'experiment complete')?.sha256 as string | undefined;
        if (!got) await new Promise((r) => setTimeout(r, 200));
      }
      expect(got, id).toBe(finalSha);
    }
    for (const p of [siteA, siteB, coordinator]) p.child.kill('SIGTERM');
    for (const p of [siteA, siteB, coordinator]) expect(await p.exited).toEqual({ code: 0, signal: null });
  }, 240_000);
});
