/**
 * `patchfed bench federation`: the real coordinator and N real site clients, each in its own
 * process on loopback, federating one round of a U-Net layout of a given size with prepared
 * updates (no training), so what is measured is the federation's own data path: per-site upload
 * speed, the time from the last upload byte to the new signed checkpoint on disk, the
 * coordinator's peak memory against the model's size, bytes moved, and where the coordinator's
 * CPU time goes (a V8 CPU profile summarised by part).
 *
 * Peak RSS: the coordinator's high-water mark is reset (/proc/<pid>/clear_refs) once it is up
 * and has written its initial model, so the figure is the round's, not start-up's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { generateKeyPairs, writeKeyFiles } from '../shared/crypto/keys.ts';
import { layoutManifest } from '../shared/model/index.ts';
import { totalParameters } from '../shared/weights.ts';

const ROOT = resolve(import.meta.dirname, '..');

export interface FederationBenchOptions {
  /** Model sizes: 'thesis' (base 32, ~22.6M parameters) or 'large' (base 106, ~247M). */
  models: ('thesis' | 'large')[];
  sites: number[];
  /** Write V8 CPU profiles of the coordinator and summarise them. */
  profile?: boolean;
  log?: (line: string) => void;
}

export interface FederationRun {
  model: string;
  params: number;
  modelBytes: number;
  sites: number;
  /** Per site: encoded update bytes / seconds from its first chunk to the coordinator's commit-ok. */
  /** Median over sites of uploadMBpsPerSite. */
  uploadMBps: number;
  uploadMBpsPerSite: number[];
  uploadSeconds: number[];
  lastUploadToCheckpointS: number;
  coordinatorIdleRssBytes: number;
  /** The idle coordinator's V8 heap (used/total) and native buffers, bytes: what its RSS is made of. */
  coordinatorIdleMemory: { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
  coordinatorPeakRssBytes: number;
  rssOverModel: number;
  /** Checkpoint bytes served plus update bytes received in the round, over 2 × sites × model bytes. */
  wireBytesOverModel: number | null;
  roundSeconds: number;
  cpuProfile: CpuSummary | null;
  loadAverage: { start: number[]; end: number[] };
  rejected: string[];
}

export interface CpuSummary {
  busyMs: number;
  /** Share of busy time per part of the coordinator, e.g. crypto, validation, aggregation, transport. */
  shares: Record<string, number>;
  /** The functions with the most self time: 'part: function (file)' → share. */
  top: Record<string, number>;
}

const MODELS = { thesis: 32, large: 106 } as const;

function layoutOf(base: number) {
  return { mode: 'patch' as const, arch: { base, depth: 5, norm: 'batch' as const }, channels: 4, classes: 4, stages: [{ stage: 'patch' as const, inChannels: 4 }] };
}

/** A state dir, keys and a coordinator config for one run (`experiment` overrides fields of its experiment; bench/secagg-rounds.ts). */
export function prepare(dir: string, base: number, siteCount: number, experiment: Record<string, unknown> = {}): { config: string; siteIds: string[] } {
  mkdirSync(join(dir, 'keys'), { recursive: true });
  const coordinator = generateKeyPairs();
  writeKeyFiles(join(dir, 'keys', 'coordinator'), coordinator);
  const siteIds = Array.from({ length: siteCount }, (_, i) => `site-${String(i + 1).padStart(2, '0')}`);
  for (const id of siteIds) writeKeyFiles(join(dir, 'keys', id), generateKeyPairs());
  const config = {
    host: '127.0.0.1',
    port: 0,
    stateDir: './state',
    secretKey: './keys/coordinator.key',
    publicKey: './keys/coordinator.pub',
    dashboardToken: randomBytes(32).toString('base64url'),
    sites: siteIds.map((id) => ({ id, publicKey: `./keys/${id}.pub` })),
    limits: { maxConnections: 256, maxMessagesPerSecond: 10_000, chunkBytes: 4 * 1024 * 1024 },
    experiment: {
      id: 'bench',
      task: 'federation bench',
      labels: { '0': 'background', '1': 'a', '2': 'b', '3': 'c' },
      modalities: { '0': 'm0', '1': 'm1', '2': 'm2', '3': 'm3' },
      model: { mode: 'patch', base, depth: 5, norm: 'batch' },
      rounds: 1,
      minSites: siteCount,
      localSteps: 1,
      roundDeadlineSeconds: 3600,
      startupGraceSeconds: 3600,
      ...experiment,
    },
  };
  const path = join(dir, 'coordinator.json');
  writeFileSync(path, JSON.stringify(config, null, 2), { mode: 0o600 });
  return { config: path, siteIds };
}

export interface Child {
  process: ChildProcess;
  events: Record<string, unknown>[];
  next(predicate: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

export function start(args: string[], name: string, log: (line: string) => void, env: Record<string, string> = {}): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const events: Record<string, unknown>[] = [];
  const waiters: { predicate: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    events.push(e);
    for (const w of [...waiters]) {
      if (w.predicate(e)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  });
  createInterface({ input: child.stderr }).on('line', (line) => {
    if (/error|Error/.test(line)) log(`  [${name}] ${line}`);
  });
  return {
    process: child,
    events,
    next: (predicate) => {
      const found = events.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolvePromise, reject) => {
        waiters.push({ predicate, resolve: resolvePromise });
        child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before the expected event`)));
      });
    },
  };
}

function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

export async function runFederationBench(options: FederationBenchOptions): Promise<FederationRun[]> {
  const log = options.log ?? (() => {});
  const runs: FederationRun[] = [];
  for (const model of options.models) {
    const base = MODELS[model];
    const params = totalParameters(layoutManifest(layoutOf(base)));
    for (const siteCount of options.sites) {
      log(`${model} U-Net (${(params / 1e6).toFixed(1)}M parameters, ${((4 * params) / 1e6).toFixed(0)} MB), ${siteCount} site(s)…`);
      runs.push(await runOnce(model, base, params, siteCount, options.profile === true, log));
      const r = runs[runs.length - 1]!;
      log(
        `  upload ${r.uploadMBps.toFixed(1)} MB/s per site (median), last upload byte → checkpoint ${r.lastUploadToCheckpointS.toFixed(2)} s, ` +
          `coordinator idle RSS ${(r.coordinatorIdleRssBytes / 1e6).toFixed(0)} MB (V8 heap ${(r.coordinatorIdleMemory.heapTotal / 1e6).toFixed(0)} MB), load ${r.loadAverage.start.map((x) => x.toFixed(1)).join('/')}, ` +
          `coordinator peak RSS ${(r.coordinatorPeakRssBytes / 1e6).toFixed(0)} MB (${r.rssOverModel.toFixed(2)}× model), wire ${r.wireBytesOverModel?.toFixed(3) ?? '?'}× (2·sites·model)` +
          (r.cpuProfile ? `, CPU ${Object.entries(r.cpuProfile.shares).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join(' ')}` : ''),
      );
    }
  }
  return runs;
}

async function runOnce(model: string, base: number, params: number, siteCount: number, profile: boolean, log: (line: string) => void): Promise<FederationRun> {
  const dir = mkdtempSync(join(tmpdir(), 'patchfed-bench-fed-'));
  const loadStart = loadavg();
  const children: Child[] = [];
  try {
    const { config, siteIds } = prepare(dir, base, siteCount);
    const profileFile = join(dir, 'coordinator.cpuprofile');
    const coordinator = start(['--expose-gc', 'bench/federation-coordinator.ts', config], 'coordinator', log, profile ? { BENCH_CPU_PROFILE: profileFile } : {});
    children.push(coordinator);
    const ready = await coordinator.next((e) => e.event === 'ready');
    const pid = Number(ready.pid);
    const idleRss = procStatus(pid, 'VmRSS');
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // reset the peak-RSS counter: measure the round only
    const started = Date.now();
    for (const id of siteIds) children.push(start(['bench/federation-site.ts', id, String(ready.url), join(dir, 'keys', `${id}.key`), join(dir, 'keys', 'coordinator.pub')], id, log));
    const complete = await coordinator.next((e) => e.event === 'round-complete');
    const peak = procStatus(pid, 'VmHWM');
    const sites = children.slice(1);
    const uploads = await Promise.all(sites.map((s) => s.next((e) => e.event === 'uploaded')));
    await Promise.all(sites.map((s) => s.next((e) => e.event === 'complete').catch(() => null)));
    const exited = new Promise((resolveExit) => coordinator.process.once('exit', resolveExit));
    coordinator.process.stdin?.write('stop\n');
    await exited; // the CPU profile is written on exit
    const modelBytes = 4 * params;
    const uploadSeconds = uploads.map((u) => (Number(u.confirmed) - Number(u.begin)) / 1000);
    const uploadMBps = uploads.map((u, i) => Number(u.bytes) / 1e6 / (uploadSeconds[i] || Infinity));
    const lastCommit = Math.max(...uploads.map((u) => Number(u.commit)));
    const bytesMoved = typeof complete.bytesMoved === 'number' ? complete.bytesMoved : null;
    return {
      model,
      params,
      modelBytes,
      sites: siteCount,
      uploadMBps: median(uploadMBps),
      uploadMBpsPerSite: uploadMBps,
      uploadSeconds,
      lastUploadToCheckpointS: (Number(complete.at) - lastCommit) / 1000,
      coordinatorIdleRssBytes: idleRss,
      coordinatorIdleMemory: { heapUsed: Number(ready.heapUsed), heapTotal: Number(ready.heapTotal), external: Number(ready.external), arrayBuffers: Number(ready.arrayBuffers) },
      coordinatorPeakRssBytes: peak,
      rssOverModel: peak / modelBytes,
      wireBytesOverModel: bytesMoved === null ? null : bytesMoved / (2 * siteCount * modelBytes),
      roundSeconds: (Number(complete.at) - started) / 1000,
      cpuProfile: profile ? summariseProfile(profileFile) : null,
      loadAverage: { start: loadStart, end: loadavg() },
      rejected: coordinator.events.filter((e) => e.event === 'update-rejected').map((e) => String(e.message)),
    };
  } finally {
    for (const c of children) if (c.process.exitCode === null) c.process.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  hitCount?: number;
}

/** The part of the coordinator a profile node's self time belongs to. */
function partOf(node: ProfileNode): string | null {
  const { url, functionName } = node.callFrame;
  if (functionName === '(idle)' || functionName === '(program)') return null;
  if (functionName === '(garbage collector)') return 'gc';
  // Native frames carry no URL; in this process update/final/digest/verify/sign are node:crypto's.
  if (url === '' && /^(update|final|digest|verify|sign|setAuthTag|hkdfSync)$/.test(functionName)) return 'crypto';
  if (/shared\/crypto\/|node:internal\/crypto|tweetnacl/.test(url)) return 'crypto';
  if (/shared\/codec\//.test(url)) return 'validation';
  if (/coordinator\/strategies\/|weights-encoder/.test(url)) return 'aggregation';
  if (/coordinator\/store\/|checkpoint-service/.test(url)) return 'checkpoint';
  if (/node_modules\/(ws|socket\.io|engine\.io|socket\.io-parser|bufferutil)|node:internal\/(stream|net|http)/.test(url)) return 'transport';
  if (/shared\/protocol\//.test(url)) return 'protocol';
  if (/node:internal\/fs|node:fs/.test(url)) return 'file-io';
  return 'other';
}

function summariseProfile(file: string): CpuSummary | null {
  let profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  try {
    profile = JSON.parse(readFileSync(file, 'utf8')) as typeof profile;
  } catch {
    return null;
  }
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  const functions = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const part = node ? partOf(node) : null;
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    if (!node || !part) return;
    busy += dt;
    totals.set(part, (totals.get(part) ?? 0) + dt);
    const fn = `${part}: ${node.callFrame.functionName || '(anonymous)'} (${node.callFrame.url.replace(/^.*\/(node_modules\/[^/]+|[^/]+\/[^/]+)\//, '$1/')})`;
    functions.set(fn, (functions.get(fn) ?? 0) + dt);
  });
  const shares: Record<string, number> = {};
  for (const [k, v] of [...totals].sort((a, b) => b[1] - a[1])) shares[k] = busy > 0 ? v / busy : 0;
  const top: Record<string, number> = {};
  for (const [k, v] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, 12)) top[k] = busy > 0 ? v / busy : 0;
  return { busyMs: busy, shares, top };
}

export function writeFederationReport(path: string, runs: FederationRun[]): void {
  mkdirSync(dirname(resolve(path)), { recursive: true });
  writeFileSync(path, `${JSON.stringify({ machine: { loadAverage: loadavg(), cpus: (globalThis.navigator?.hardwareConcurrency ?? null) }, runs }, null, 2)}\n`);
}
