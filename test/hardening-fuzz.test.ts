/**
 * The short form of the seeded protocol fuzzer (bench/fuzz.ts; the long form is
 * `npm run bench -- fuzz`, ≥ 10,000 messages): a real coordinator with two honest site clients
 * completing rounds, while fuzzers send ~800 mutated messages — before authentication over fresh
 * socket.io connections, as raw websocket frames, after authentication from an enrolled site,
 * and inside the upload chunk streams of another enrolled site. No crash (uncaught exception,
 * unhandled rejection, internal-error reply or event, error-level log line, polluted prototype),
 * rounds keep completing with the honest sites, /healthz still ok. ~30 s.
 */
import { describe, expect, it } from 'vitest';
import { runProtocolFuzz } from '../bench/fuzz.ts';

describe('seeded protocol fuzzer (short form)', () => {
  it('~800 mutated messages of every class: no crash, honest rounds complete, coordinator healthy', async () => {
    const report = await runProtocolFuzz({ seed: 11, messages: 800, legitSites: 2, minRounds: 1, maxRssGrowthMB: 300, timeoutMs: 150_000, requireEveryType: false });
    const m = report.messages;
    console.log(
      `fuzz (short): ${m.total} messages — pre-auth ${m.preAuth}, post-auth ${m.postAuth}, chunk streams ${m.chunkStream}, raw ${m.rawFrames}; ` +
        `${Object.keys(report.byType).length} types; ${report.roundsCompletedWhileFuzzing} rounds; RSS ${report.rssMB.start.toFixed(0)} → peak ${report.rssMB.peak.toFixed(0)} MB`,
    );
    expect(report.crashes).toEqual([]);
    expect(report.problems).toEqual([]);
    expect(m.total).toBeGreaterThanOrEqual(800);
    // Every class of fuzz reached the coordinator, and many message types.
    expect(m.preAuth).toBeGreaterThan(100);
    expect(m.postAuth).toBeGreaterThan(20);
    expect(m.rawFrames).toBeGreaterThan(100);
    expect(Object.keys(report.byType).length).toBeGreaterThanOrEqual(20);
    // The coordinator answered with refusals, never with an internal error.
    expect(Object.keys(report.replies).some((k) => k.endsWith(':bad-message'))).toBe(true);
    expect(report.roundsCompletedWhileFuzzing).toBeGreaterThanOrEqual(1);
    expect(report.honestUpdatesAccepted).toBeGreaterThanOrEqual(2);
    expect(report.healthyAtEnd).toBe(true);
  }, 200_000);
});
