/**
 * The JSON the dashboard receives, built once per push and shared by every socket and by
 * /api/snapshot. Bounded so a long experiment cannot make the page slow: the event log keeps its
 * newest entries and the round history its latest rounds; non-integer numbers (Dice, loss) are
 * sent with 5 significant digits, which is more than the page shows and halves the payload.
 */
import type { DashboardPayload, DashboardSnapshot } from './types.ts';

export const MAX_DASHBOARD_EVENTS = 500;
export const MAX_DASHBOARD_ROUNDS = 1000;
export const MAX_DASHBOARD_CHECKPOINTS = 200;
const SIGNIFICANT_DIGITS = 5;

export function buildPayload(snapshot: DashboardSnapshot, now: Date): DashboardPayload {
  return {
    ...snapshot,
    rounds: lastN(snapshot.rounds, MAX_DASHBOARD_ROUNDS),
    checkpoints: lastN(snapshot.checkpoints, MAX_DASHBOARD_CHECKPOINTS),
    events: lastN(snapshot.events, MAX_DASHBOARD_EVENTS),
    serverTime: now.toISOString(),
  };
}

export function serializePayload(snapshot: DashboardSnapshot, now: Date = new Date()): string {
  return JSON.stringify(buildPayload(snapshot, now), roundFractions);
}

function lastN<T>(items: readonly T[], n: number): T[] {
  return items.length > n ? items.slice(items.length - n) : items.slice();
}

function roundFractions(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && Number.isFinite(value) && !Number.isInteger(value)) {
    return Number(value.toPrecision(SIGNIFICANT_DIGITS));
  }
  return value;
}
