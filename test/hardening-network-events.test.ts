/**
 * The event log stays bounded (issue 11, item 10): a client saying `hello` as unknown sites over
 * and over makes one row per summary interval, not one per attempt, and the table never holds
 * more than limits.maxEventRows rows (refused enrolments at most a tenth of them), keeping the
 * newest.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { hogSlots, type SlotHog } from '../bench/hostile-clients.ts';
import type { CoordinatorEvents } from '../coordinator/index.ts';
import { StateDb } from '../coordinator/store/index.ts';
import { collect, FederationHarness } from './federation-fixtures.ts';

const federation = new FederationHarness();
const hogs: SlotHog[] = [];

afterEach(async () => {
  await Promise.all(hogs.splice(0).map((h) => h.stop()));
});

describe('event log', () => {
  it('repeated refused hellos for unknown sites make one row per interval, not one per attempt', { timeout: 120_000 }, async () => {
    const { coordinator } = await federation.start({ sites: ['site-a'], experiment: { rounds: 1, minSites: 1, startupGraceSeconds: 600 }, limits: { maxEventRows: 200 } }, { repeatSummaryIntervalMs: 500 });
    const c = coordinator;
    const refusals = collect<CoordinatorEvents['auth-failed']>(c.events, 'auth-failed');
    const rowsBefore = c.db.countEvents('enrol-refused');
    // 8 connections from 4 addresses, each saying hello as a new unknown site and reconnecting
    // as soon as the coordinator closes it.
    const intruders = hogSlots({ url: c.url, loops: 8, localAddress: (i) => `127.0.4.${2 + (i % 4)}`, behaviour: 'unknown-hello' });
    hogs.push(intruders);
    const deadline = Date.now() + 60_000;
    while (refusals.length < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await intruders.stop();
    hogs.splice(0);
    await new Promise((r) => setTimeout(r, 1200)); // the last summary interval closes

    const rows = c.db.listEvents({ kind: 'enrol-refused' }).slice(rowsBefore);
    const summaries = rows.filter((r) => /^Repeated \d+ more time/.test(r.message));
    const summarised = summaries.reduce((n, r) => n + Number(/^Repeated (\d+)/.exec(r.message)![1]), 0);
    console.log(`${refusals.length} refused hellos for unknown sites → ${rows.length} event rows (${summaries.length} summaries covering ${summarised})`);
    expect(refusals.length).toBeGreaterThanOrEqual(300);
    expect(refusals.every((r) => r.code === 'unknown-site')).toBe(true);
    // The first refusal in full, then one summary per interval that had repeats; together they account for every refusal.
    expect(rows[0]!.message).toMatch(/is not enrolled/);
    expect(rows.length).toBe(1 + summaries.length);
    expect(1 + summarised).toBe(refusals.length);
    expect(rows.length).toBeLessThan(refusals.length / 10);
  });

  it('keeps at most maxEventRows rows, the newest, and refused enrolments at most a tenth of them', () => {
    const db = StateDb.open(':memory:');
    try {
      db.setEventRetention(200);
      for (let i = 0; i < 1000; i++) db.recordEvent({ kind: 'enrol-refused', message: `refused ${i}` });
      // Pruning runs every 100 inserts: between two runs the table may be up to 100 rows over.
      expect(db.countEvents('enrol-refused')).toBeLessThanOrEqual(20 + 100);
      for (let i = 0; i < 1000; i++) db.recordEvent({ kind: 'round-complete', message: `round ${i}` });
      expect(db.countEvents()).toBeLessThanOrEqual(200 + 100);
      db.pruneEvents();
      expect(db.countEvents()).toBe(200);
      expect(db.countEvents('enrol-refused')).toBeLessThanOrEqual(20);
      const kept = db.listEvents();
      expect(kept.at(-1)!.message).toBe('round 999'); // the newest stay
      expect(kept[0]!.message).toBe('round 800');
      // Lowering the cap prunes at once.
      db.setEventRetention(50);
      expect(db.countEvents()).toBe(50);
      expect(db.listEvents()[0]!.message).toBe('round 950');
    } finally {
      db.close();
    }
  });
});
