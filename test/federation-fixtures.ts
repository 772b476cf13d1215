/**
 * Fixtures for the federation tests: a throw-away federation on disk (coordinator + site keys,
 * config), a tiny two-tensor "model", deterministic fake training, in-process site clients,
 * wire instrumentation (every message a site emits, with its size) and small async helpers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'socket.io-client';
import { afterEach } from 'vitest';
import { startCoordinator, type RunningCoordinator, type StartCoordinatorOptions } from '../coordinator/index.ts';
import { CoordinatorConfigSchema, type CoordinatorConfig } from '../shared/config/coordinator.ts';
import { generateKeyPairs, writeKeyFiles, type KeyPairs } from '../shared/crypto/keys.ts';
import type { Metrics } from '../shared/protocol/messages.ts';
import type { Log } from '../coordinator/server/log.ts';
import type { NamedWeights, WeightSpec } from '../shared/weights.ts';
import { LIVER_LABELS, LIVER_MODALITIES } from '../site-agent/phantom/index.ts';
import { CoordinatorClient, type RoundResult, type RoundTask, type TaskControl } from '../site-agent/daemon/client.ts';

export const MiB = 1024 * 1024;

export interface Federation {
  dir: string;
  configPath: string;
  config: CoordinatorConfig;
  coordinatorKeys: KeyPairs;
  siteKeys: Map<string, KeyPairs>;
  cleanup(): void;
}

export interface FederationOptions {
  sites?: string[];
  experiment?: Partial<CoordinatorConfig['experiment']>;
  limits?: Partial<CoordinatorConfig['limits']>;
  port?: number;
}

/**
 * The experiment of the tests that really train: the tiny U-Net, patch mode, on small liver
 * phantoms (generatePhantomDataset task 'liver'), with roomy deadlines for a loaded machine.
 */
export function tinyLiverExperiment(overrides: Partial<CoordinatorConfig['experiment']> = {}): Partial<CoordinatorConfig['experiment']> {
  return {
    task: 'Task03_Liver (phantom)',
    labels: { ...LIVER_LABELS },
    modalities: { ...LIVER_MODALITIES },
    model: { mode: 'patch', preset: 'tiny', norm: 'instance', cascadeFactor: 0.5 },
    rounds: 2,
    minSites: 2,
    localSteps: 3,
    learningRate: 0.01,
    roundDeadlineSeconds: 120,
    startupGraceSeconds: 60,
    ...overrides,
  };
}

/** Keys for a coordinator and `sites`, and a valid config (written to <dir>/coordinator.json). */
export function makeFederation(options: FederationOptions = {}): Federation {
  const dir = mkdtempSync(join(tmpdir(), 'patchfed-fed-'));
  const sites = options.sites ?? ['site-a', 'site-b', 'site-c'];
  const coordinatorKeys = generateKeyPairs();
  writeKeyFiles(join(dir, 'coordinator'), coordinatorKeys);
  const siteKeys = new Map<string, KeyPairs>();
  for (const id of sites) {
    const keys = generateKeyPairs();
    writeKeyFiles(join(dir, id), keys);
    siteKeys.set(id, keys);
  }
  const raw = {
    host: '127.0.0.1',
    port: options.port ?? 0,
    stateDir: 'state',
    secretKey: 'coordinator.key',
    publicKey: 'coordinator.pub',
    dashboardToken: 'fed-Jq3xV9sLk2Wm7RtZp4Nc8Hd6Yb1Ge5UfQa0T', // strong enough (shared/config/dashboard-token.ts)
    sites: sites.map((id) => ({ id, publicKey: `${id}.pub` })),
    limits: { chunkBytes: MiB, ...options.limits },
    experiment: {
      id: 'fed-test',
      task: 'Task99_Fake',
      labels: { '0': 'background', '1': 'tumour' },
      modalities: { '0': 'T1' },
      model: { mode: 'patch', preset: 'tiny', norm: 'instance', cascadeFactor: 0.5 },
      rounds: 2,
      minSites: sites.length,
      fractionFit: 1,
      localSteps: 4,
      roundDeadlineSeconds: 60,
      startupGraceSeconds: 20,
      ...options.experiment,
    },
  };
  const configPath = join(dir, 'coordinator.json');
  writeFileSync(configPath, JSON.stringify(raw, null, 2));
  return {
    dir,
    configPath,
    config: CoordinatorConfigSchema.parse(raw),
    coordinatorKeys,
    siteKeys,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Two tensors, ~1.2 MB encoded: uploads span two 1 MiB chunks. */
export function fakeManifest(big = 300_000): WeightSpec[] {
  return [
    { name: 'enc0/conv/kernel', shape: [big], trainable: true, role: 'conv-kernel' },
    { name: 'enc0/norm/gamma', shape: [8], trainable: true, role: 'norm-gamma' },
  ];
}

export function fakeInitialWeights(manifest: WeightSpec[] = fakeManifest()): NamedWeights {
  return {
    manifest,
    values: manifest.map((s, t) => {
      const n = s.shape.reduce((a, b) => a * b, 1);
      return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.01 + t) * 0.1);
    }),
  };
}

/** Deterministic "training": global + a site- and round-specific perturbation. */
export function fakeUpdate(global: NamedWeights, siteIndex: number, round: number): NamedWeights {
  return {
    manifest: global.manifest.map((s) => ({ ...s, shape: [...s.shape] })),
    values: global.values.map((v, t) => Float32Array.from(v, (x, i) => x + 0.01 * (siteIndex + 1) * Math.cos(i * 0.001 * (round + 1) + t + siteIndex))),
  };
}

export function fakeMetrics(loss = 0.5): Metrics {
  return { loss, dice: { tumour: 0.6 }, timeMs: 5, peakMemoryBytes: 1_000_000, backend: 'cpu', patch: [16, 16, 16], batch: 1 };
}

/** Sample-weighted mean in float64. */
export function weightedMean(updates: { update: NamedWeights; samples: number }[]): Float64Array[] {
  const total = updates.reduce((s, u) => s + u.samples, 0);
  return updates[0]!.update.values.map((_, t) => {
    const out = new Float64Array(updates[0]!.update.values[t]!.length);
    for (const u of updates) {
      const v = u.update.values[t]!;
      for (let i = 0; i < v.length; i++) out[i]! += (u.samples * v[i]!) / total;
    }
    return out;
  });
}

/** ||a − b|| / ||b|| over all tensors. */
export function relativeError(actual: Float32Array[], expected: Float64Array[]): number {
  let num = 0;
  let den = 0;
  actual.forEach((a, t) => {
    const e = expected[t]!;
    for (let i = 0; i < a.length; i++) {
      num += (a[i]! - e[i]!) ** 2;
      den += e[i]! ** 2;
    }
  });
  return Math.sqrt(num / den);
}

/** One message: event name and payload size (binary bytes + JSON of the rest). */
export interface WireRecord {
  type: string;
  bytes: number;
  at: number;
  /** With `keepContent`: the JSON text and every binary attachment, as they were sent. */
  content?: Buffer[];
}

/** JSON text of a payload plus its binary attachments (Buffer / Uint8Array / ArrayBuffer). */
export function payloadContent(value: unknown): Buffer[] {
  const parts: Buffer[] = [];
  const json = JSON.stringify(value, (_k, v: unknown) => {
    if (v instanceof Uint8Array) {
      parts.push(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      return 0;
    }
    if (v instanceof ArrayBuffer) {
      parts.push(Buffer.from(v));
      return 0;
    }
    if (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      parts.push(Buffer.from((v as { data: number[] }).data));
      return 0;
    }
    return v;
  });
  parts.push(Buffer.from(json ?? '', 'utf8'));
  return parts;
}

export function payloadBytes(value: unknown): number {
  let binary = 0;
  const json = JSON.stringify(value, (_k, v: unknown) => {
    if (v instanceof Uint8Array || v instanceof ArrayBuffer) {
      binary += v.byteLength;
      return 0;
    }
    if (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      binary += ((v as { data: unknown[] }).data).length;
      return 0;
    }
    return v;
  });
  return binary + Buffer.byteLength(json ?? '', 'utf8');
}

/** Wraps socket.emit to record everything the site sends; `tamper` may rewrite an argument list. */
export function recordEmits(socket: Socket, records: WireRecord[], tamper?: (type: string, args: unknown[]) => unknown[], keepContent = false): void {
  const original = socket.emit.bind(socket);
  (socket as unknown as { emit: (...a: unknown[]) => unknown }).emit = (type: unknown, ...args: unknown[]) => {
    const sent = tamper ? tamper(String(type), args) : args;
    const data = sent.filter((a) => typeof a !== 'function');
    records.push({
      type: String(type),
      bytes: data.reduce<number>((s, a) => s + payloadBytes(a), 0),
      at: Date.now(),
      ...(keepContent ? { content: data.flatMap(payloadContent) } : {}),
    });
    return original(type as string, ...(sent as []));
  };
}

export type FakeHandler = (task: RoundTask, ctl: TaskControl) => Promise<RoundResult>;

export interface TestSite {
  id: string;
  client: CoordinatorClient;
  /** Everything the site emitted. */
  wire: WireRecord[];
  /** With `keepContent`: every coordinator push and acknowledgement the site received. */
  received: WireRecord[];
  socket: Socket | null;
  tasks: RoundTask[];
}

/** An in-process site client with fast reconnects; the handler defaults to fakeUpdate. */
export function startSite(
  fed: Federation,
  url: string,
  siteId: string,
  options: {
    handler?: FakeHandler;
    samples?: number;
    tamper?: (type: string, args: unknown[]) => unknown[];
    /** Sees (and may modify in place) every coordinator push before the client does. */
    inbound?: (type: string, payload: unknown) => void;
    keys?: KeyPairs;
    start?: boolean;
    /** Keep message contents (both directions) for searching them afterwards. */
    keepContent?: boolean;
  } = {},
): TestSite {
  const index = [...fed.siteKeys.keys()].indexOf(siteId);
  const site: TestSite = { id: siteId, client: null as unknown as CoordinatorClient, wire: [], received: [], socket: null, tasks: [] };
  site.client = new CoordinatorClient({
    url,
    siteId,
    keys: options.keys ?? fed.siteKeys.get(siteId)!,
    coordinatorPublicKey: fed.coordinatorKeys,
    chunkBytes: MiB,
    backoff: { initialMs: 100, maxMs: 400 },
    log: testLog(siteId),
    instrumentSocket: (socket) => {
      site.socket = socket;
      const keep = options.keepContent === true;
      const receivedAcks = (type: string, args: unknown[]): unknown[] => {
        const ack = args[args.length - 1];
        if (typeof ack !== 'function') return args;
        const recording = Object.assign(
          (err: unknown, reply: unknown) => {
            if (!err) site.received.push({ type: `ack:${type}`, bytes: payloadBytes(reply), at: Date.now(), content: payloadContent(reply) });
            (ack as (e: unknown, r: unknown) => void)(err, reply);
          },
          { withError: (ack as { withError?: boolean }).withError },
        );
        return [...args.slice(0, -1), recording];
      };
      const tamper = options.tamper;
      recordEmits(socket, site.wire, keep ? (type, args) => receivedAcks(type, tamper ? tamper(type, args) : args) : tamper, keep);
      const inbound = options.inbound;
      socket.prependAny((type: string, ...args: unknown[]) => {
        if (keep) site.received.push({ type, bytes: payloadBytes(args[0]), at: Date.now(), content: payloadContent(args[0]) });
        inbound?.(type, args[0]);
      });
    },
  });
  const handler: FakeHandler =
    options.handler ??
    (async (task, ctl) => {
      ctl.progress(task.steps, task.steps);
      return { update: fakeUpdate(task.global, index, task.round), samples: options.samples ?? 10 * (index + 1), metrics: fakeMetrics() };
    });
  site.client.onTask(async (task, ctl) => {
    site.tasks.push(task);
    return handler(task, ctl);
  });
  if (options.start !== false) site.client.start();
  return site;
}

export type SiteOptions = NonNullable<Parameters<typeof startSite>[3]>;

/** A test's federation: its files and its running coordinator. */
export interface FederationUnderTest {
  fed: Federation;
  coordinator: RunningCoordinator;
}

/**
 * The setup every federation test repeats, in one place: `start` writes a federation and starts
 * its coordinator (fake initial weights of `manifest`, the test log, the federation's folder as
 * base), `addSite` starts an in-process site; after each test the sites, the coordinator and the
 * files go. Call once at the top level of a test file: it registers the `afterEach`.
 */
export class FederationHarness {
  private files: Federation | null = null;
  private service: RunningCoordinator | null = null;
  /** Every site started through `addSite` (or handed to `track`) in the current test. */
  sites: TestSite[] = [];

  constructor() {
    afterEach(() => this.teardown());
  }

  async start(options: FederationOptions & { manifest?: WeightSpec[] } = {}, coordinatorOptions: StartCoordinatorOptions = {}): Promise<FederationUnderTest> {
    const { manifest, ...federationOptions } = options;
    // Kept before the coordinator starts: a failed start still removes the files.
    const fed = (this.files = makeFederation(federationOptions));
    const coordinator = (this.service = await startCoordinator(fed.config, { baseDir: fed.dir, initialWeights: () => fakeInitialWeights(manifest), log: testLog(), ...coordinatorOptions }));
    return { fed, coordinator };
  }

  /** The current test's federation (after `start`). */
  get fed(): Federation {
    if (!this.files) throw new Error('FederationHarness: start() first');
    return this.files;
  }

  get coordinator(): RunningCoordinator {
    if (!this.service) throw new Error('FederationHarness: start() first');
    return this.service;
  }

  /** Starts an in-process site of the current federation (see startSite); it is stopped after the test. */
  addSite(siteId: string, options: SiteOptions = {}): TestSite {
    return this.track(startSite(this.fed, this.coordinator.url, siteId, options));
  }

  /** Stops `site` with the others after the test (a site started with startSite directly). */
  track(site: TestSite): TestSite {
    this.sites.push(site);
    return site;
  }

  private async teardown(): Promise<void> {
    const { sites, service, files } = this;
    this.sites = [];
    this.service = null;
    this.files = null;
    try {
      await Promise.all(sites.map((s) => s.client.stop()));
      await service?.stop();
    } finally {
      files?.cleanup();
    }
  }
}

/**
 * Anything with typed `on`/`off` (CoordinatorClient, coordinator.events): the helpers below take
 * the emitter loosely and let the caller name the payload type, since typed overloads of `on`
 * do not unify with a single generic listener signature.
 */
interface Listenable {
  on(name: never, listener: never): unknown;
  off(name: never, listener: never): unknown;
}
type LooseEmitter = { on(name: string, l: (p: unknown) => void): unknown; off(name: string, l: (p: unknown) => void): unknown };

/** Resolves with the first payload of `event` matching `predicate`; rejects after `timeoutMs`. */
export function waitForEvent<T>(emitter: Listenable, event: string, predicate: (payload: T) => boolean = () => true, timeoutMs = 30_000): Promise<T> {
  const e = emitter as unknown as LooseEmitter;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      e.off(event, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for '${event}'`));
    }, timeoutMs);
    const listener = (payload: unknown) => {
      if (!predicate(payload as T)) return;
      clearTimeout(timer);
      e.off(event, listener);
      resolve(payload as T);
    };
    e.on(event, listener);
  });
}

/** Collects every payload of `event` into an array (for assertions afterwards). */
export function collect<T>(emitter: Listenable, event: string): T[] {
  const out: T[] = [];
  (emitter as unknown as LooseEmitter).on(event, (p) => out.push(p as T));
  return out;
}

/** Coordinator log for tests: silent unless PATCHFED_TEST_LOG=1 (then printed, for debugging). */
export function testLog(prefix = 'coordinator'): Log {
  return process.env.PATCHFED_TEST_LOG === '1' ? (level, msg, fields) => console.log(`[${prefix}] ${level} ${msg}`, fields ? JSON.stringify(fields).slice(0, 400) : '') : () => {};
}

// ---- real processes (`node cli/patchfed.js ...`) ----

const CLI = fileURLToPath(new URL('../cli/patchfed.js', import.meta.url));

/** A free TCP port on loopback (for a coordinator that must come back on the same URL). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface CliProcess {
  child: ChildProcess;
  /** stdout + stderr lines so far. */
  lines: string[];
  /** Resolves with the first line (already seen or future) matching; rejects on timeout or exit. */
  waitForLine(match: RegExp | ((line: string) => boolean), timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `patchfed <args>`; output lines are collected (and printed with PATCHFED_TEST_LOG=1). */
export function spawnCli(args: string[], name: string): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let done = false;
  const onLine = (line: string) => {
    lines.push(line);
    if (process.env.PATCHFED_TEST_LOG === '1') console.log(`[${name}] ${line.slice(0, 400)}`);
    for (const w of [...waiters]) w();
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let buffered = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      done = true;
      for (const w of [...waiters]) w();
      resolve({ code, signal });
    }),
  );
  const waitForLine = (match: RegExp | ((line: string) => boolean), timeoutMs = 60_000) => {
    const test = typeof match === 'function' ? match : (l: string) => match.test(l);
    return new Promise<string>((resolve, reject) => {
      let seen = 0;
      const timer = setTimeout(() => finish(new Error(`${name}: no line matching ${String(match)} within ${timeoutMs} ms; last lines:\n${lines.slice(-15).join('\n')}`)), timeoutMs);
      const finish = (result: string | Error) => {
        clearTimeout(timer);
        waiters.delete(check);
        if (typeof result === 'string') resolve(result);
        else reject(result);
      };
      const check = () => {
        for (; seen < lines.length; seen++) if (test(lines[seen]!)) return finish(lines[seen]!);
        if (done) finish(new Error(`${name} exited before printing a line matching ${String(match)}; last lines:\n${lines.slice(-15).join('\n')}`));
      };
      waiters.add(check);
      check();
    });
  };
  return { child, lines, waitForLine, exited };
}

/** Parsed pino JSON line, or null for other output. */
export function jsonLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** A `patchfed site` config for `siteId` of `fed` (keys already in fed.dir), written to <fed.dir>/<siteId>.site.json. */
export function writeSiteConfig(fed: Federation, siteId: string, url: string, extra: { dataset: string; memoryBudgetMB: number; logFile?: string; [k: string]: unknown }): string {
  writeFileSync(join(fed.dir, `${siteId}.coordinator.pub`), readFileSync(join(fed.dir, 'coordinator.pub')));
  const path = join(fed.dir, `${siteId}.site.json`);
  const raw = {
    siteId,
    cacheMB: 32,
    workDir: `${siteId}-work`,
    ...extra,
    federation: { coordinatorUrl: url, secretKey: `${siteId}.key`, publicKey: `${siteId}.pub`, coordinatorPublicKey: `${siteId}.coordinator.pub` },
  };
  writeFileSync(path, JSON.stringify(raw, null, 2));
  return path;
}
