import * as fs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, StateDb } from '../coordinator/store/index.ts';
import { patchFedErrorOf as errorOf } from './error-fixtures.ts';

let dir: string;
let db: StateDb;
let clock: number;
const now = () => new Date(clock);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'patchfed-db-'));
  clock = Date.parse('2025-03-01T10:00:00Z');
  db = StateDb.open(join(dir, 'state.db'), { now });
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function setUp(): void {
  db.createExperiment({ id: 'exp', name: 'Prostate', strategy: 'fedavg', config: { rounds: 3 } });
  db.upsertSite({ id: 'a', fingerprint: 'fp-a', backend: 'cpu', memoryBudgetBytes: 2 ** 30, plannedPatch: [64, 64, 32], plannedBatch: 2 });
  db.upsertSite({ id: 'b', fingerprint: 'fp-b' });
  db.commitInitialCheckpoint('exp', 1);
}

describe('state DB schema', () => {
  it('migrates to the latest user_version, with WAL, synchronous=FULL and foreign keys', () => {
    expect(db.schemaVersion).toBe(MIGRATIONS.length);
    expect(db.settings()).toEqual({ journalMode: 'wal', synchronous: 'FULL', foreignKeys: true });
    db.createExperiment({ id: 'e', name: 'n', strategy: 'fedbn', config: {} });
    db.close();
    db = StateDb.open(join(dir, 'state.db'), { now }); // re-opening applies nothing twice
    expect(db.getExperiment('e')?.strategy).toBe('fedbn');
  });

  it('refuses a DB from a newer PatchFed and a file that is not a DB', () => {
    db.close();
    const raw = new Database(join(dir, 'state.db'));
    raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    raw.close();
    const err = errorOf(() => StateDb.open(join(dir, 'state.db')));
    expect(err.code).toBe('state-db-too-new');
    expect(err.message).toContain('state.db');
    fs.writeFileSync(join(dir, 'junk.db'), 'this is not sqlite'.repeat(100));
    // Not a DB at all is refused like a damaged one, with the way out (--repair).
    const junk = errorOf(() => StateDb.open(join(dir, 'junk.db')));
    expect(junk.code).toBe('state-db-corrupt');
    expect(junk.message).toMatch(/junk\.db.*--repair/);
    db = StateDb.open(':memory:');
  });
});

describe('rounds', () => {
  it('runs open → aggregating → complete and records the checkpoint version and duration', () => {
    setUp();
    expect(db.lastCompletedRound('exp')).toBe(0);
    const r = db.openRound({ experimentId: 'exp', round: 1, selectedSites: ['a', 'b'], deadline: new Date(clock + 60_000) });
    expect(r).toMatchObject({ round: 1, attempt: 1, status: 'open', selectedSites: ['a', 'b'], deadline: '2025-03-01T10:01:00.000Z' });
    db.startAggregation(r.id);
    clock += 1500;
    const done = db.completeRound(r.id, 2);
    expect(done).toMatchObject({ status: 'complete', checkpointVersion: 2, durationMs: 1500, endedAt: '2025-03-01T10:00:01.500Z' });
    expect(db.lastCompletedRound('exp')).toBe(1);
    expect(db.maxCommittedCheckpointVersion()).toBe(2);
  });

  it('enforces the round order and the state machine', () => {
    expect(errorOf(() => db.openRound({ experimentId: 'nope', round: 1, selectedSites: [] })).code).toBe('unknown-experiment');
    db.createExperiment({ id: 'exp', name: 'x', strategy: 'fedavg', config: null });
    expect(db.lastCompletedRound('exp')).toBeNull();
    expect(errorOf(() => db.openRound({ experimentId: 'exp', round: 1, selectedSites: [] })).code).toBe('no-initial-checkpoint');
    db.commitInitialCheckpoint('exp', 1);
    expect(errorOf(() => db.commitInitialCheckpoint('exp', 2)).code).toBe('round-out-of-order');
    expect(errorOf(() => db.openRound({ experimentId: 'exp', round: 2, selectedSites: [] })).message).toMatch(/next round is 1, not 2/);
    const r = db.openRound({ experimentId: 'exp', round: 1, selectedSites: [] });
    expect(errorOf(() => db.openRound({ experimentId: 'exp', round: 1, selectedSites: [] })).code).toBe('round-active');
    expect(errorOf(() => db.completeRound(r.id, 2)).message).toMatch(/is open; it cannot become complete/);
    db.startAggregation(r.id);
    expect(errorOf(() => db.completeRound(r.id, 1)).code).toBe('checkpoint-version-regressed');
    expect(db.getRound(r.id)?.status).toBe('aggregating');
    expect(errorOf(() => db.startAggregation(r.id)).code).toBe('round-state');
    db.failRound(r.id, 'too few updates');
    expect(db.getRound(r.id)).toMatchObject({ status: 'failed', failureReason: 'too few updates', checkpointVersion: null });
    // A failed round is retried with the next attempt number.
    expect(db.openRound({ experimentId: 'exp', round: 1, selectedSites: [] }).attempt).toBe(2);
  });

  it('recoverAfterCrash fails interrupted rounds, marks sites offline and logs the retry', () => {
    setUp();
    db.setSiteOnline('a', true);
    const r = db.openRound({ experimentId: 'exp', round: 1, selectedSites: ['a'] });
    db.startAggregation(r.id);
    const retries = db.recoverAfterCrash();
    expect(retries).toEqual([{ experimentId: 'exp', round: 1, failedAttempt: 1, nextAttempt: 2 }]);
    expect(db.getRound(r.id)?.status).toBe('failed');
    expect(db.getRound(r.id)?.failureReason).toMatch(/restarted while the round was aggregating/);
    expect(db.activeRound('exp')).toBeUndefined();
    expect(db.getSite('a')?.online).toBe(false);
    expect(db.listEvents().map((e) => e.kind)).toEqual(['restart', 'round-retry']);
    expect(db.listEvents({ kind: 'round-retry' })[0]).toMatchObject({ experimentId: 'exp', round: 1 });
    expect(db.openRound({ experimentId: 'exp', round: 1, selectedSites: ['a'] }).attempt).toBe(2);
    expect(db.lastCompletedRound('exp')).toBe(0);
    // A second crash during the retry fails attempt 2 in turn.
    expect(db.recoverAfterCrash()).toEqual([{ experimentId: 'exp', round: 1, failedAttempt: 2, nextAttempt: 3 }]);
    expect(db.activeRound('exp')).toBeUndefined();
    expect(db.recoverAfterCrash()).toEqual([]);
  });

  it('invalidates only the newest complete round', () => {
    setUp();
    const r1 = db.openRound({ experimentId: 'exp', round: 1, selectedSites: [] });
    db.startAggregation(r1.id);
    db.completeRound(r1.id, 2);
    const initial = db.listRounds('exp')[0]!;
    expect(errorOf(() => db.invalidateCompletedRound(initial.id, 'x')).message).toMatch(/not the newest complete round/);
    const failed = db.invalidateCompletedRound(r1.id, 'checkpoint lost');
    expect(failed).toMatchObject({ status: 'failed', checkpointVersion: 2, failureReason: 'checkpoint lost' });
    expect(db.lastCompletedRound('exp')).toBe(0);
    expect(db.maxCommittedCheckpointVersion()).toBe(1);
  });
});

describe('sites, updates, metrics, events', () => {
  it('stores site plans and refuses a changed key fingerprint', () => {
    setUp();
    expect(db.getSite('a')).toMatchObject({ backend: 'cpu', memoryBudgetBytes: 2 ** 30, plannedPatch: [64, 64, 32], plannedBatch: 2, online: false, lastSeen: null });
    const err = errorOf(() => db.upsertSite({ id: 'a', fingerprint: 'fp-evil' }));
    expect(err.code).toBe('site-fingerprint-mismatch');
    expect(err.subject).toBe('a');
    // Updating the plan keeps what was not given.
    db.upsertSite({ id: 'a', fingerprint: 'fp-a', plannedBatch: 1 });
    expect(db.getSite('a')).toMatchObject({ plannedBatch: 1, backend: 'cpu' });
    db.upsertSite({ id: 'a', fingerprint: 'fp-new' }, { allowFingerprintChange: true });
    expect(db.getSite('a')?.fingerprint).toBe('fp-new');
    clock += 5000;
    db.setSiteOnline('b', true);
    expect(db.getSite('b')).toMatchObject({ online: true, lastSeen: '2025-03-01T10:00:05.000Z' });
    expect(errorOf(() => db.touchSite('ghost')).code).toBe('unknown-site');
    expect(errorOf(() => db.upsertSite({ id: 'c', fingerprint: 'f', plannedPatch: [64, 64] })).message).toMatch(/3 sizes/);
    expect(db.listSites().map((s) => s.id)).toEqual(['a', 'b']);
  });

  it('records site updates once per attempt, rejections freely, and metrics per round', () => {
    setUp();
    const r = db.openRound({ experimentId: 'exp', round: 1, selectedSites: ['a', 'b'] });
    db.recordSiteUpdate({ roundId: r.id, siteId: 'a', status: 'rejected', reason: 'NaN in enc0/conv/kernel' });
    db.recordSiteUpdate({ roundId: r.id, siteId: 'a', status: 'accepted', numSamples: 12, bytes: 4096, metrics: { loss: 0.4 } });
    expect(errorOf(() => db.recordSiteUpdate({ roundId: r.id, siteId: 'a', status: 'accepted', numSamples: 12 })).code).toBe('duplicate-update');
    expect(errorOf(() => db.recordSiteUpdate({ roundId: r.id, siteId: 'ghost', status: 'accepted' })).code).toBe('unknown-site');
    expect(errorOf(() => db.recordSiteUpdate({ roundId: r.id, siteId: 'b', status: 'accepted', numSamples: -1 })).code).toBe('bad-state-input');
    const updates = db.listSiteUpdates(r.id);
    expect(updates.map((u) => [u.siteId, u.status, u.reason])).toEqual([
      ['a', 'rejected', 'NaN in enc0/conv/kernel'],
      ['a', 'accepted', null],
    ]);
    expect(updates[1]).toMatchObject({ numSamples: 12, bytes: 4096, metrics: { loss: 0.4 } });

    db.recordMetrics(r.id, 'a', [{ kind: 'val_dice', label: 'prostate', value: 0.8 }, { kind: 'loss', value: 0.3 }]);
    db.recordMetrics(r.id, null, [{ kind: 'update_norm', value: 1.5 }]);
    expect(errorOf(() => db.recordMetrics(r.id, 'a', [{ kind: 'loss', value: 0.1 }, { kind: 'loss', value: NaN }])).message).toMatch(/finite/);
    expect(db.listMetrics('exp').length).toBe(3); // the batch with a NaN was refused as a whole
    expect(db.listMetrics('exp', { siteId: 'a', kind: 'val_dice' })).toMatchObject([{ round: 1, attempt: 1, label: 'prostate', value: 0.8 }]);
    expect(db.listMetrics('exp', { round: 2 })).toEqual([]);

    db.startAggregation(r.id);
    db.completeRound(r.id, 2);
    expect(errorOf(() => db.recordSiteUpdate({ roundId: r.id, siteId: 'b', status: 'accepted', numSamples: 3 })).message).toMatch(/is complete/);
    db.recordSiteUpdate({ roundId: r.id, siteId: 'b', status: 'rejected', reason: 'late' });
  });

  it('keeps an ordered, filterable event log', () => {
    setUp();
    db.recordEvent({ kind: 'enrol', siteId: 'a', message: 'Site a enrolled.' });
    db.recordEvent({ kind: 'enrol-refused', siteId: 'mallory', message: 'Unknown key.' });
    db.recordEvent({ kind: 'dropout', siteId: 'a', experimentId: 'exp', round: 1, message: 'Site a missed the deadline.' });
    expect(db.listEvents({ siteId: 'a' }).map((e) => e.kind)).toEqual(['enrol', 'dropout']);
    const first = db.listEvents({ limit: 1 });
    expect(first.map((e) => e.kind)).toEqual(['enrol']);
    expect(db.listEvents({ afterId: first[0]!.id }).map((e) => e.kind)).toEqual(['enrol-refused', 'dropout']);
  });
});
