/**
 * `patchfed bench secagg --federated`: secure aggregation's cost in real rounds. The real
 * coordinator (bench/federation-coordinator.ts) and real site clients (bench/secagg-rounds-sites.ts,
 * several per process so 32 sites fit a 2-core machine) run two rounds on loopback with prepared
 * updates (no training), once plainly and once under secure aggregation (complete graph,
 * t = ⌊n/2⌋ + 1) with the whole protocol: key advertisements, share envelopes relayed by the
 * coordinator, masked ring uploads on the encrypted chunk path, unmasking shares, unmasking.
 * The coordinator set-up is bench/federation.ts's (prepare, start).
 *
 * Per run:
 *  - round time: round-complete of round 1 → round-complete of round 2 on the coordinator, i.e. a
 *    whole steady-state round: task, checkpoint download, (secure: keys and shares), upload,
 *    (secure: unmasking), aggregation, the signed checkpoint on disk;
 *  - bytes: each site's engine.io packets (socket.io frames and binary attachments; no WebSocket
 *    or TCP framing) from its round-1 task to its round-2 task: everything of round 1 — download,
 *    protocol messages, upload, acknowledgements, status — summed over sites as the coordinator's
 *    inbound and outbound bytes.
 * Wall times on a shared machine depend on its load, which is recorded with every run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { layoutManifest } from '../shared/model/index.ts';
import { totalParameters } from '../shared/weights.ts';
import { prepare, start, type Child } from './federation.ts';

export interface RoundsModel {
  name: string;
  base: number;
  depth: number;
}

/** cpu-small (the simulation's model) and base 30 depth 5 (19.8M parameters: the 19M of issue 12, the thesis U-Net's order of size). */
export const ROUNDS_MODELS: readonly RoundsModel[] = [
  { name: 'cpu-small', base: 8, depth: 3 },
  { name: '19M', base: 30, depth: 5 },
];

export interface SecAggRoundsOptions {
  models: readonly RoundsModel[];
  sites: number[];
  /** Most site processes per run (sites are spread over them evenly). */
  processes: number;
  log?: (line: string) => void;
}

export interface SecAggRoundsRun {
  model: string;
  parameters: number;
  sites: number;
  /** Shamir threshold under secure aggregation; null for the plain run. */
  threshold: number | null;
  secure: boolean;
  processes: number;
  /** Round 2, round-complete to round-complete (seconds). */
  roundSeconds: number;
  /** Round 1's bytes, summed over sites: what the coordinator received and sent. */
  coordinatorInBytes: number;
  coordinatorOutBytes: number;
  loadAverage: { start: number[]; end: number[] };
}

const INSTANCE = 'instance' as const;

export function modelParameters(model: RoundsModel): number {
  return totalParameters(layoutManifest({ mode: 'patch', arch: { base: model.base, depth: model.depth, norm: INSTANCE }, channels: 4, classes: 4, stages: [{ stage: 'patch', inChannels: 4 }] }));
}

export function secureThreshold(sites: number): number {
  return Math.floor(sites / 2) + 1;
}

/** Each model × site count, plain then secure. */
export async function runSecAggRoundsBench(options: SecAggRoundsOptions): Promise<SecAggRoundsRun[]> {
  const log = options.log ?? (() => {});
  const runs: SecAggRoundsRun[] = [];
  for (const model of options.models) {
    const parameters = modelParameters(model);
    for (const sites of options.sites) {
      for (const secure of [false, true]) {
        log(`${model.name} (${parameters.toLocaleString('en')} parameters), ${sites} sites, ${secure ? `secure (t = ${secureThreshold(sites)})` : 'plain'}…`);
        const run = await runOnce(model, parameters, sites, secure, Math.min(sites, options.processes), log);
        runs.push(run);
        log(`  round ${run.roundSeconds.toFixed(2)} s; coordinator in ${mib(run.coordinatorInBytes)} MiB, out ${mib(run.coordinatorOutBytes)} MiB; load ${run.loadAverage.start.map((x) => x.toFixed(1)).join('/')}`);
      }
    }
  }
  return runs;
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 3 : 1);
}

async function runOnce(model: RoundsModel, parameters: number, siteCount: number, secure: boolean, processes: number, log: (line: string) => void): Promise<SecAggRoundsRun> {
  const dir = mkdtempSync(join(tmpdir(), 'patchfed-bench-secagg-'));
  const loadStart = loadavg();
  const children: Child[] = [];
  try {
    // Long step timeouts: on a loaded machine a slow site must not be dropped (the steps close as soon as every site answered).
    const slow = 3600;
    const aggregation = secure ? { aggregation: { secure: { threshold: secureThreshold(siteCount), keysTimeoutSeconds: slow, sharesTimeoutSeconds: slow, unmaskTimeoutSeconds: slow } } } : {};
    const { config, siteIds } = prepare(dir, model.base, siteCount, { rounds: 2, model: { mode: 'patch', base: model.base, depth: model.depth, norm: INSTANCE }, ...aggregation });
    const coordinator = start(['bench/federation-coordinator.ts', config], 'coordinator', log);
    children.push(coordinator);
    const ready = await coordinator.next((e) => e.event === 'ready');
    const groups = Array.from({ length: processes }, (_, p) => siteIds.filter((_, i) => i % processes === p));
    const siteProcesses = groups.map((ids, p) =>
      start(['bench/secagg-rounds-sites.ts', String(ready.url), join(dir, 'keys', 'coordinator.pub'), ...ids.map((id) => `${id}=${join(dir, 'keys', `${id}.key`)}`)], `sites-${p + 1}`, log),
    );
    children.push(...siteProcesses);
    const failure = new Promise<never>((_, reject) => {
      for (const c of children) {
        c.next((e) => e.event === 'rejected' || e.event === 'task-failed' || e.event === 'update-rejected').then((e) => reject(new Error(`${String(e.siteId ?? '')}: ${String(e.message)}`)), () => undefined);
        // A process that dies before the last round would leave the round waiting for its sites.
        c.process.once('exit', (code) => reject(new Error(`a bench process exited with code ${String(code)} before round 2 completed`)));
      }
    });
    failure.catch(() => undefined); // observed by the races below
    const round = (r: number) => Promise.race([coordinator.next((e) => e.event === 'round-complete' && e.round === r), failure]);
    const first = await round(1);
    const second = await round(2);
    const siteEvents = (id: string, p: Child) => ({
      task1: p.next((e) => e.event === 'task' && e.siteId === id && e.round === 1),
      task2: p.next((e) => e.event === 'task' && e.siteId === id && e.round === 2),
    });
    let inBytes = 0;
    let outBytes = 0;
    for (const [p, ids] of groups.entries()) {
      const child = siteProcesses[p];
      if (!child) continue;
      for (const id of ids) {
        const { task1, task2 } = siteEvents(id, child);
        const [a, b] = await Promise.all([task1, task2]);
        outBytes += Number(b.bytesIn) - Number(a.bytesIn); // the site's inbound is the coordinator's outbound
        inBytes += Number(b.bytesOut) - Number(a.bytesOut);
      }
      await Promise.all(ids.map((id) => child.next((e) => e.event === 'complete' && e.siteId === id).catch(() => null)));
    }
    const exited = new Promise((resolveExit) => coordinator.process.once('exit', resolveExit));
    coordinator.process.stdin?.write('stop\n');
    await exited;
    return {
      model: model.name,
      parameters,
      sites: siteCount,
      threshold: secure ? secureThreshold(siteCount) : null,
      secure,
      processes,
      roundSeconds: (Number(second.at) - Number(first.at)) / 1000,
      coordinatorInBytes: inBytes,
      coordinatorOutBytes: outBytes,
      loadAverage: { start: loadStart, end: loadavg() },
    };
  } finally {
    for (const c of children) if (c.process.exitCode === null) c.process.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One markdown row per model × site count: plain → secure time and bytes. */
export function formatRoundsTable(runs: readonly SecAggRoundsRun[]): string[] {
  const lines = [
    '| model (parameters) | sites | t | site processes | round time, plain → secure | coordinator in per round, plain → secure | coordinator out per round, plain → secure |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const plain of runs.filter((r) => !r.secure)) {
    const secure = runs.find((r) => r.secure && r.model === plain.model && r.sites === plain.sites);
    if (!secure) continue;
    const pct = (a: number, b: number) => `${b >= a ? '+' : ''}${((100 * (b - a)) / a).toFixed(0)}%`;
    lines.push(
      `| ${plain.model} (${plain.parameters.toLocaleString('en')}) | ${plain.sites} | ${secure.threshold ?? ''} | ${plain.processes} | ` +
        `${plain.roundSeconds.toFixed(2)} → ${secure.roundSeconds.toFixed(2)} s (${pct(plain.roundSeconds, secure.roundSeconds)}) | ` +
        `${mib(plain.coordinatorInBytes)} → ${mib(secure.coordinatorInBytes)} MiB (${pct(plain.coordinatorInBytes, secure.coordinatorInBytes)}) | ` +
        `${mib(plain.coordinatorOutBytes)} → ${mib(secure.coordinatorOutBytes)} MiB (${pct(plain.coordinatorOutBytes, secure.coordinatorOutBytes)}) |`,
    );
  }
  return lines;
}
