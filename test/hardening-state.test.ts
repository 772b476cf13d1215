/**
 * Issue 11, items 6–8: the coordinator's state under an unlucky operator.
 *  6. A write failure (the disk is full) makes the coordinator unhealthy — /healthz 503 with the
 *     reason, a dashboard banner, an event — the round is retried once space is back, nothing
 *     stored before is damaged, and the failure does not count against maxRoundAttempts.
 *  7. A state DB with damaged pages (or a lost one) is refused at start, naming the file and the
 *     way out; `patchfed coordinator --repair` moves it aside and rebuilds the state from the
 *     verified signed checkpoints (quarantining one whose signature does not verify), and the
 *     experiment continues from the last verified checkpoint.
 *  8. An experiment stopped after maxRoundAttempts continues with `--resume` (or a raised limit),
 *     and a site that cannot take part declines with its reason, so nothing waits for deadlines.
 * In-process coordinators and sites with fake training, plus the real CLI for start and --repair.
 */
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startCoordinator, type CoordinatorEvents, type RunningCoordinator } from '../coordinator/index.ts';
import { StateDb, versionDirName } from '../coordinator/store/index.ts';
import { PatchFedError } from '../shared/errors.ts';
import {
  collect,
  fakeMetrics,
  fakeUpdate,
  makeFederation,
  startSite,
  testLog,
  waitForEvent,
  type FakeHandler,
  type Federation,
  type TestSite,
} from './federation-fixtures.ts';
import { completeRounds, corruptPages, injectWriteFailure, runCli, verifyStoredCheckpoints } from './hardening-fixtures.ts';

let fed: Federation | null = null;
let coordinator: RunningCoordinator | null = null;
let sites: TestSite[] = [];
let restoreDisk: (() => void) | null = null;

afterEach(async () => {
  restoreDisk?.();
  restoreDisk = null;
  await Promise.all(sites.map((s) => s.client.stop()));
  await coordinator?.stop();
  fed?.cleanup();
  fed = null;
  coordinator = null;
  sites = [];
});

const FAST_HEALTH = { probeMs: 200, unhealthyProbeMs: 100, outageLimitMs: 120_000 };

async function start(options: Parameters<typeof startCoordinator>[1] = {}, config: unknown = fed!.config): Promise<RunningCoordinator> {
  coordinator = await startCoordinator(config, { baseDir: fed!.dir, log: testLog(), health: FAST_HEALTH, ...options });
  return coordinator;
}

async function healthz(c: RunningCoordinator): Promise<{ status: number; body: { ok: boolean; problems: { code: string; message: string }[] } }> {
  const res = await fetch(`${c.url}/healthz`);
  return { status: res.status, body: (await res.json()) as { ok: boolean; problems: { code: string; message: string }[] } };
}

/** A handler that holds round `round` until `release()`. */
function holdingHandler(index: number, round: number) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const arrived = new Promise<void>((r) => (reached = r));
  const handler: FakeHandler = async (task) => {
    if (task.round === round) {
      reached();
      await released;
    }
    return { update: fakeUpdate(task.global, index, task.round), samples: 10 * (index + 1), metrics: fakeMetrics() };
  };
  return { handler, release, arrived };
}

/** Stops the coordinator and every site (a restart starts fresh ones: the URL changes). */
async function restart(): Promise<void> {
  await Promise.all(sites.map((s) => s.client.stop()));
  sites = [];
  await coordinator?.stop();
  coordinator = null;
}

/** A site whose memory budget fits nothing: it declines every task with the planner's reason. */
const budgetTooSmall: FakeHandler = async () => {
  throw new PatchFedError('E_BUDGET', 'nothing fits in 10 MB (margin 15%): the smallest patch 8x8x8 batch 1 needs ~41 MB');
};

describe('storage failures (item 6)', () => {
  it('a full disk makes the coordinator unhealthy with the reason; the round is retried when space is back and the experiment completes intact', async () => {
    fed = makeFederation({ sites: ['site-a', 'site-b'], experiment: { rounds: 3, minSites: 2, maxRoundAttempts: 2, roundDeadlineSeconds: 600 } });
    const c = await start();
    const healthEvents = collect<CoordinatorEvents['health']>(c.events, 'health');
    const failed = collect<CoordinatorEvents['round-failed']>(c.events, 'round-failed');
    const holds = [holdingHandler(0, 2), holdingHandler(1, 2)];
    sites = ['site-a', 'site-b'].map((id, i) => startSite(fed!, c.url, id, { handler: holds[i]!.handler }));
    await Promise.all(holds.map((h) => h.arrived));
    expect(c.state().lastCompletedRound).toBe(1);

    // The disk fills up while round 2 trains: the checkpoint write (and the probe) get ENOSPC.
    const stateDir = join(fed.dir, 'state');
    restoreDisk = injectWriteFailure((p) => p.startsWith(join(stateDir, 'checkpoints')) || p.includes('.health-probe'));
    const unhealthy = waitForEvent<CoordinatorEvents['health']>(c.events, 'health', (e) => !e.ok, 20_000);
    const roundFailed = waitForEvent<CoordinatorEvents['round-failed']>(c.events, 'round-failed', (f) => f.round === 2, 20_000);
    for (const h of holds) h.release();
    await unhealthy;
    expect((await roundFailed).reason).toMatch(/^interrupted: storage failure: .*(disk is full|ENOSPC)/);
    const during = await healthz(c);
    expect(during.status).toBe(503);
    expect(during.body.ok).toBe(false);
    expect(during.body.problems.map((p) => p.code)).toContain('ENOSPC');
    expect(during.body.problems.some((p) => /disk is full|ENOSPC/.test(p.message))).toBe(true);
    expect(c.snapshot().health).toMatchObject({ ok: false });
    expect(failed.filter((f) => /^attempt failed/.test(f.reason))).toEqual([]);

    // Space is back: the probe notices, the round is retried and the experiment completes.
    restoreDisk();
    restoreDisk = null;
    const end = await c.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 3 });
    expect((await healthz(c)).status).toBe(200);
    expect(healthEvents.some((e) => e.ok)).toBe(true);
    expect(c.state().end?.kind).toBe('complete');

    await c.stop();
    coordinator = null;
    // Nothing stored is damaged, and the storage failure did not count as a failed attempt.
    const check = verifyStoredCheckpoints(stateDir, fed.coordinatorKeys);
    expect(check.problems).toEqual([]);
    expect(check.verified).toEqual(check.stored);
    expect(readdirSync(join(stateDir, 'quarantine'))).toEqual([]);
    expect(StateDb.checkIntegrity(join(stateDir, 'state.db'), 'full')).toBeNull();
    const db = StateDb.open(join(stateDir, 'state.db'));
    try {
      const round2 = db.listRounds('fed-test').filter((r) => r.round === 2);
      expect(round2.at(-1)?.status).toBe('complete');
      expect(round2.filter((r) => r.status === 'failed').every((r) => (r.failureReason ?? '').startsWith('interrupted: storage failure'))).toBe(true);
      expect(db.listEvents({ kind: 'health' }).length).toBeGreaterThanOrEqual(1);
    } finally {
      db.close();
    }
  }, 90_000);
});

describe('state DB corruption and repair (item 7)', () => {
  /** A finished 2-round experiment on disk (coordinator stopped). */
  async function finishedExperiment(rounds = 2): Promise<string> {
    fed = makeFederation({ sites: ['site-a', 'site-b'], experiment: { rounds, minSites: 2, roundDeadlineSeconds: 600 } });
    const c = await start();
    sites = ['site-a', 'site-b'].map((id) => startSite(fed!, c.url, id));
    await c.finished;
    await Promise.all(sites.map((s) => s.client.stop()));
    sites = [];
    await c.stop();
    coordinator = null;
    return join(fed.dir, 'state');
  }

  it('4 damaged pages are refused at start (file and way out named); --repair rebuilds from the signed checkpoints and the experiment continues', async () => {
    const stateDir = await finishedExperiment(2);
    const dbPath = join(stateDir, 'state.db');
    const before = completeRounds(stateDir, 'fed-test');
    expect(before.map((r) => r.round)).toEqual([0, 1, 2]);
    const pages = corruptPages(dbPath, 4, 11);
    expect(pages).toHaveLength(4);

    const refused = await runCli(['coordinator', '--config', fed!.configPath]);
    expect(refused.code).toBe(1);
    const lines = refused.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^patchfed: State database .*state\.db is corrupt/);
    expect(lines[0]).toContain(`patchfed coordinator --config ${fed!.configPath} --repair`);

    const repaired = await runCli(['coordinator', '--config', fed!.configPath, '--repair']);
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(repaired.stdout).toMatch(/corrupt/);
    expect(repaired.stdout).toMatch(/3 verified/);
    expect(repaired.stdout).toMatch(/up to round 2/);
    // The damaged file is kept aside, never deleted.
    const aside = readdirSync(stateDir).filter((f) => f.startsWith('state.db.corrupt-'));
    expect(aside.length).toBeGreaterThanOrEqual(1);
    expect(StateDb.checkIntegrity(join(stateDir, aside.find((f) => !/-(wal|shm)$/.test(f))!), 'full')).not.toBeNull();
    expect(completeRounds(stateDir, 'fed-test')).toEqual(before.map((r) => ({ ...r, attempt: 1 })));

    // A second --repair finds nothing to do.
    const again = await runCli(['coordinator', '--config', fed!.configPath, '--repair']);
    expect(again.stdout).toMatch(/nothing to repair/);

    // The experiment continues after round 2 (two more rounds).
    const raw = JSON.parse(JSON.stringify(fed!.config)) as { experiment: { rounds: number } };
    raw.experiment.rounds = 4;
    const c = await start({}, raw);
    expect(c.state().lastCompletedRound).toBe(2);
    sites = ['site-a', 'site-b'].map((id) => startSite(fed!, c.url, id));
    expect(await c.finished).toMatchObject({ kind: 'complete', round: 4 });
    const check = verifyStoredCheckpoints(stateDir, fed!.coordinatorKeys);
    expect(check.problems).toEqual([]);
    expect(check.verified).toHaveLength(5);
  }, 120_000);

  it('a lost state DB is refused (the checkpoints are kept); --repair quarantines a checkpoint whose signature fails and the round is redone', async () => {
    const stateDir = await finishedExperiment(2);
    // The newest checkpoint's signature is forged; the DB is lost.
    const newest = versionDirName(3);
    const metaPath = join(stateDir, 'checkpoints', newest, 'meta.json');
    const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as { signature: string };
    meta.signature = Buffer.alloc(64, 7).toString('base64');
    writeFileSync(metaPath, JSON.stringify(meta, null, 2));
    for (const f of readdirSync(stateDir)) if (f.startsWith('state.db')) rmSync(join(stateDir, f));

    const refused = await runCli(['coordinator', '--config', fed!.configPath]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/holds 3 signed checkpoint\(s\).*--repair/);
    expect(existsSync(join(stateDir, 'checkpoints', newest))).toBe(true); // nothing was deleted

    const repaired = await runCli(['coordinator', '--config', fed!.configPath, '--repair']);
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(repaired.stdout).toMatch(/v3\b.*signature does not verify.* -> quarantine\//);
    expect(repaired.stdout).toMatch(/up to round 1/);
    expect(readdirSync(join(stateDir, 'quarantine')).some((f) => f.startsWith(newest))).toBe(true);
    expect(completeRounds(stateDir, 'fed-test').map((r) => [r.round, r.version])).toEqual([
      [0, 1],
      [1, 2],
    ]);

    // Round 2 is redone under a new version (the quarantined number is never reused).
    const c = await start();
    expect(c.state().lastCompletedRound).toBe(1);
    sites = ['site-a', 'site-b'].map((id) => startSite(fed!, c.url, id));
    expect(await c.finished).toMatchObject({ kind: 'complete', round: 2, checkpointVersion: 4 });
  }, 120_000);
});

describe('a stopped experiment goes on (item 8) and sites that cannot take part say so (item 12)', () => {
  it('stops after maxRoundAttempts declined attempts without waiting for deadlines; a restart stops again; a raised limit or --resume continues', async () => {
    // A 10-minute deadline: the test would time out if any round waited for it.
    fed = makeFederation({ sites: ['site-a', 'site-b'], experiment: { rounds: 1, minSites: 2, maxRoundAttempts: 2, roundDeadlineSeconds: 600 } });
    let c = await start();
    const declined = collect<CoordinatorEvents['round-declined']>(c.events, 'round-declined');
    const stoppedEvent = waitForEvent<CoordinatorEvents['experiment-stopped']>(c.events, 'experiment-stopped');
    sites = [startSite(fed, c.url, 'site-a'), startSite(fed, c.url, 'site-b', { handler: budgetTooSmall })];
    expect(await c.finished).toMatchObject({ kind: 'stopped', round: 1 });
    expect((await stoppedEvent).message).toMatch(/maxRoundAttempts 2.*raise experiment\.maxRoundAttempts.*--resume/);
    expect(declined.map((d) => [d.siteId, d.round, d.attempt, d.code])).toEqual([
      ['site-b', 1, 1, 'budget-too-small'],
      ['site-b', 1, 2, 'budget-too-small'],
    ]);
    expect(declined[0]!.message).toMatch(/nothing fits in 10 MB/);
    expect(c.db.listEvents({ kind: 'round-declined' })).toHaveLength(2);
    expect(c.db.listRounds('fed-test').filter((r) => r.round === 1).map((r) => r.failureReason)).toEqual([
      expect.stringMatching(/1 accepted update\(s\), 2 needed \(0 rejected, 1 declined, 0 missing\)/),
      expect.stringMatching(/1 declined/),
    ]);

    // A plain restart stops again at once (no site needs to be there for that).
    await restart();
    c = await start();
    expect(await c.finished).toMatchObject({ kind: 'stopped', round: 1 });

    // A raised limit gives more attempts (site-b still cannot take part: stopped after 4).
    await restart();
    const raised = JSON.parse(JSON.stringify(fed.config)) as { experiment: { maxRoundAttempts: number } };
    raised.experiment.maxRoundAttempts = 4;
    c = await start({}, raised);
    sites = [startSite(fed, c.url, 'site-a'), startSite(fed, c.url, 'site-b', { handler: budgetTooSmall })];
    expect(await c.finished).toMatchObject({ kind: 'stopped', reason: expect.stringMatching(/failed 4 time\(s\) \(maxRoundAttempts 4\)/) });

    // site-b's operator fixed its budget (a restarted daemon); --resume forgives the failed attempts.
    await restart();
    c = await start({ resume: true });
    sites = [startSite(fed, c.url, 'site-a'), startSite(fed, c.url, 'site-b')];
    expect(await c.finished).toMatchObject({ kind: 'complete', round: 1 });
    expect(c.db.listEvents({ kind: 'experiment-resumed' })).toHaveLength(1);
    expect(c.db.listRounds('fed-test').filter((r) => r.round === 1).map((r) => r.status)).toEqual(['failed', 'failed', 'failed', 'failed', 'complete']);
  }, 120_000);
});
