/**
 * Generated dashboard snapshots and a throw-away express + socket.io server for the dashboard
 * tests. Values are pseudo-random but deterministic (seeded), and the aggregate fields
 * (globalDice = mean of site Dice) are computed from the per-site values, not typed in.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Server } from 'socket.io';
import { mountDashboard } from '../coordinator/dashboard/index.ts';
import type {
  CheckpointDownload,
  DashboardEvent,
  DashboardHandle,
  DashboardRoundRecord,
  DashboardSite,
  DashboardSnapshot,
  LabelDice,
} from '../coordinator/dashboard/types.ts';

export const TEST_TOKEN = 'dash-R8vK2mQx7LpZ4wN9cT3yH6bJ1sF5gD0aUeW';
export const XSS_REASON = '<img src=x onerror="window.__xss=1">update norm 9.1 exceeds bound 5';

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export interface SnapshotShape {
  sites: number;
  rounds: number;
  labels?: string[];
  events?: number;
  seed?: number;
}

export function siteId(i: number): string {
  return `site-${String(i + 1).padStart(2, '0')}`;
}

export function makeRound(round: number, siteIds: string[], labels: string[], rand: () => number): DashboardRoundRecord {
  const siteDice: Record<string, LabelDice> = {};
  const siteLoss: Record<string, number | null> = {};
  for (const id of siteIds) {
    const dice: LabelDice = {};
    labels.forEach((l, li) => {
      const ceiling = 0.9 - 0.12 * li;
      dice[l] = Math.min(1, Math.max(0, ceiling * (1 - Math.exp(-round / 12)) + (rand() - 0.5) * 0.06));
    });
    siteDice[id] = dice;
    siteLoss[id] = 1.2 * Math.exp(-round / 20) + 0.15 + rand() * 0.05;
  }
  const globalDice: LabelDice = {};
  for (const l of labels) {
    const vals = siteIds.map((id) => siteDice[id]![l]).filter((v): v is number => v !== null);
    globalDice[l] = vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : null;
  }
  return {
    round,
    durationMs: Math.round(180_000 + rand() * 120_000),
    globalDice,
    siteDice,
    siteLoss,
    bytesMoved: Math.round(siteIds.length * 2 * 7.3e6 * (0.95 + rand() * 0.1)),
    checkpointVersion: round,
  };
}

export function makeSnapshot(shape: SnapshotShape): DashboardSnapshot {
  const rand = rng(shape.seed ?? 7);
  const labels = shape.labels ?? ['edema', 'non-enhancing', 'enhancing'];
  const ids = Array.from({ length: shape.sites }, (_, i) => siteId(i));
  const rounds = Array.from({ length: shape.rounds }, (_, i) => makeRound(i + 1, ids, labels, rand));
  const lastRound = rounds[rounds.length - 1];
  // Anchored to the real clock so "last seen" and the deadline countdown look like a live run.
  const now = Date.now();
  const T0 = now - shape.rounds * 240_000 - 60_000;
  const sites: DashboardSite[] = ids.map((id, i) => {
    const gpu = i % 3 === 0;
    const online = i % 5 !== 4;
    return {
      id,
      online,
      lastSeen: new Date(now - (online ? 3000 : 3_600_000)).toISOString(),
      backend: gpu ? 'webgl' : i % 3 === 1 ? 'tensorflow' : 'cpu',
      gpu,
      memoryBudgetMB: gpu ? 8192 : 4096,
      patch: gpu ? [96, 96, 32] : [64, 64, 32],
      batch: gpu ? 2 : 1,
      roundsParticipated: shape.rounds - (i % 4),
      lastUpdate:
        i === 1
          ? { round: shape.rounds, status: 'rejected', reason: XSS_REASON }
          : shape.rounds > 0
            ? { round: shape.rounds, status: 'accepted' }
            : null,
      dice: lastRound?.siteDice[id] ?? null,
    };
  });
  const states = ['downloading', 'evaluating', 'training', 'uploading', 'done', 'late'] as const;
  const events: DashboardEvent[] = [];
  const eventCount = shape.events ?? Math.min(40, ids.length + shape.rounds);
  for (let i = 0; i < eventCount; i++) {
    const site = ids[i % ids.length];
    events.push(
      i < ids.length
        ? { time: new Date(T0 + i * 1000).toISOString(), kind: 'enrolled', site, message: `${site} enrolled` }
        : { time: new Date(T0 + (i - ids.length + 1) * 240_000).toISOString(), kind: 'round-end', message: `round ${i - ids.length + 1} aggregated` },
    );
  }
  return {
    experiment: {
      id: 'brats-demo',
      task: 'Task01_BrainTumour',
      mode: 'patch',
      preset: 'cpu-small',
      base: 8,
      depth: 3,
      norm: 'instance',
      strategy: 'fedavg',
      rounds: Math.max(shape.rounds + 5, 10),
      minSites: Math.min(2, ids.length),
      localSteps: 20,
      roundDeadlineSeconds: 600,
      labels,
      startedAt: new Date(T0).toISOString(),
    },
    sites,
    currentRound: {
      round: shape.rounds + 1,
      attempt: 1,
      startedAt: new Date(now - 60_000).toISOString(),
      deadline: new Date(now + 540_000).toISOString(),
      sites: ids.map((id, i) => {
        const state = states[i % states.length]!;
        const stepsDone = state === 'training' ? 7 + (i % 10) : state === 'downloading' || state === 'evaluating' ? 0 : 20;
        const bytesTotal = 14_600_000;
        const downloadTotalBytes = 14_580_000;
        const downloadedBytes = state === 'downloading' ? downloadTotalBytes / 4 : downloadTotalBytes;
        const bytesTransferred = state === 'uploading' ? bytesTotal / 2 : state === 'done' ? bytesTotal : 0;
        return { id, state, stepsDone, stepsTotal: 20, downloadedBytes, downloadTotalBytes, bytesTransferred, bytesTotal: bytesTransferred > 0 ? bytesTotal : 0 };
      }),
    },
    rounds,
    checkpoints: rounds.slice(-10).map((r) => ({
      version: r.round,
      round: r.round,
      createdAt: new Date(T0 + r.round * 240_000).toISOString(),
      sha256: Array.from({ length: 64 }, () => Math.floor(rand() * 16).toString(16)).join(''),
      signatureValid: r.round % 7 !== 0,
      sizeBytes: 7_300_000 + r.round,
    })),
    events,
  };
}

export interface TestServer {
  url: string;
  handle: DashboardHandle;
  /** Replace what the provider returns. */
  setSnapshot(s: DashboardSnapshot): void;
  providerCalls(): number;
  close(): Promise<void>;
}

export async function startDashboardServer(initial: DashboardSnapshot, opts: { minPushIntervalMs?: number } = {}): Promise<TestServer> {
  let current = initial;
  let calls = 0;
  const app = express();
  const server = createServer(app);
  const io = new Server(server);
  const artifacts = new Map<number, CheckpointDownload>([[3, { fileName: 'weights-v3.pfw', bytes: new Uint8Array([1, 2, 3, 4, 5]) }]]);
  const handle = mountDashboard(app, io, {
    token: TEST_TOKEN,
    snapshot: () => {
      calls++;
      return current;
    },
    downloadCheckpoint: (v) => artifacts.get(v) ?? null,
    minPushIntervalMs: opts.minPushIntervalMs,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    handle,
    setSnapshot: (s) => {
      current = s;
    },
    providerCalls: () => calls,
    close: async () => {
      handle.close();
      await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  };
}
