/**
 * The seeded protocol fuzzer: a real coordinator (startCoordinator, in this process) with real
 * site clients (site-agent/daemon/client.ts) completing rounds, while fuzzers send it mutated
 * messages of every type in shared/protocol/messages.ts:
 *  - before authentication, over fresh socket.io connections (mostly hello/auth, but every type);
 *  - as raw websocket frames (garbage, engine.io / socket.io packets malformed or in the wrong
 *    direction, binary attachments, unknown namespaces);
 *  - after authentication, from an enrolled site's socket (every type, every argument shape,
 *    with and without acknowledgements; the coordinator may close it for abuse: it reconnects);
 *  - inside real update uploads of another enrolled site, whose chunk streams are mutated in
 *    flight (indices, transfer ids, nonces, ciphertext bits and lengths, signatures, commits).
 * A crash is an uncaught exception or unhandled rejection, an 'internal-error' reply or event, or
 * an error-level coordinator log line. `npm test` runs a short form (test/hardening-fuzz.test.ts),
 * `npm run bench -- fuzz` the long one.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { startCoordinator, type CoordinatorEvents, type RunningCoordinator } from '../coordinator/index.ts';
import { generateDashboardToken } from '../shared/config/dashboard-token.ts';
import { generateKeyPairs, writeKeyFiles, type KeyPairs } from '../shared/crypto/keys.ts';
import type { Metrics } from '../shared/protocol/messages.ts';
import { COORDINATOR_MESSAGE_TYPES, SITE_MESSAGE_TYPES } from '../shared/protocol/messages.ts';
import { mulberry32 } from '../shared/random.ts';
import type { NamedWeights, WeightSpec } from '../shared/weights.ts';
import { CoordinatorClient } from '../site-agent/daemon/client.ts';
import { Fuzz } from './fuzz-mutations.ts';
import { RawWebSocket, clientFrame } from './hostile-clients.ts';

export interface FuzzOptions {
  seed?: number;
  /** Mutated messages to send in all (default 10,000). */
  messages?: number;
  /** Honest sites completing rounds meanwhile (default 2). */
  legitSites?: number;
  /** Rounds that must complete while fuzzing (default 3). */
  minRounds?: number;
  /** Largest acceptable growth of this process's RSS from the first completed round to the end (MB). */
  maxRssGrowthMB?: number;
  /** Gives up (and reports it) after this long (default 15 min). */
  timeoutMs?: number;
  /**
   * Report a problem when a message type was never sent before or after authentication (default
   * true). A short run (npm test) cannot promise every type: the loops share one seeded generator.
   */
  requireEveryType?: boolean;
  log?: (line: string) => void;
}

export type MessageClass = 'preAuth' | 'postAuth' | 'chunkStream' | 'rawFrames';

export interface FuzzReport {
  seed: number;
  messages: Record<MessageClass, number> & { total: number };
  /** Mutated messages per message type and class (raw frames not included). */
  byType: Record<string, Partial<Record<MessageClass, number>>>;
  /** Acknowledgements by `type:code` (e.g. error:bad-message) and how many requests got none. */
  replies: Record<string, number>;
  crashes: string[];
  /** Times the coordinator closed the post-auth fuzzer's connection (abuse), which then reconnected. */
  fuzzerReconnects: number;
  roundsCompletedWhileFuzzing: number;
  /** Updates accepted from the honest sites while fuzzing. */
  honestUpdatesAccepted: number;
  rssMB: { start: number; peak: number; end: number };
  healthyAtEnd: boolean;
  durationMs: number;
  /** Empty when the run passed. */
  problems: string[];
}

const MiB = 1024 * 1024;
const FUZZ_POST = 'fuzz-post';
const FUZZ_CHUNKS = 'fuzz-chunks';

/** Two tensors, ~1.2 MB encoded: every upload is a stream of two 1 MiB chunks. */
function fuzzWeights(): NamedWeights {
  const manifest: WeightSpec[] = [
    { name: 'enc0/conv/kernel', shape: [300_000], trainable: true, role: 'conv-kernel' },
    { name: 'enc0/norm/gamma', shape: [8], trainable: true, role: 'norm-gamma' },
  ];
  return { manifest, values: manifest.map((s, t) => Float32Array.from({ length: s.shape[0]! }, (_, i) => Math.sin(i * 0.01 + t) * 0.1)) };
}

function honestUpdate(global: NamedWeights, site: number, round: number): NamedWeights {
  return {
    manifest: global.manifest.map((s) => ({ ...s, shape: [...s.shape] })),
    values: global.values.map((v, t) => Float32Array.from(v, (x, i) => x + 0.001 * (site + 1) * Math.cos(i * 0.001 * (round + 1) + t))),
  };
}

const METRICS: Metrics = { loss: 0.5, dice: { tumour: 0.6 }, timeMs: 5, peakMemoryBytes: 1_000_000, backend: 'cpu', patch: [16, 16, 16], batch: 1 };

interface Federation {
  dir: string;
  config: Record<string, unknown>;
  coordinatorKeys: KeyPairs;
  siteKeys: Map<string, KeyPairs>;
}

function createFederation(legitSites: string[]): Federation {
  const dir = mkdtempSync(join(tmpdir(), 'patchfed-fuzz-'));
  const coordinatorKeys = generateKeyPairs();
  writeKeyFiles(join(dir, 'coordinator'), coordinatorKeys);
  const siteKeys = new Map<string, KeyPairs>();
  for (const id of [...legitSites, FUZZ_POST, FUZZ_CHUNKS]) {
    const keys = generateKeyPairs();
    writeKeyFiles(join(dir, id), keys);
    siteKeys.set(id, keys);
  }
  const config = {
    host: '127.0.0.1',
    port: 0,
    stateDir: 'state',
    secretKey: 'coordinator.key',
    publicKey: 'coordinator.pub',
    dashboardToken: generateDashboardToken(),
    sites: [...siteKeys.keys()].map((id) => ({ id, publicKey: `${id}.pub` })),
    // The default limits, except a message rate high enough that most fuzz reaches the handlers.
    limits: { chunkBytes: MiB, maxMessagesPerSecond: 1000 },
    experiment: {
      id: 'fuzz',
      task: 'Task99_Fuzz',
      labels: { '0': 'background', '1': 'tumour' },
      modalities: { '0': 'T1' },
      model: { mode: 'patch', preset: 'tiny', norm: 'instance', cascadeFactor: 0.5 },
      rounds: 1_000_000,
      minSites: legitSites.length,
      fractionFit: 1,
      localSteps: 1,
      roundDeadlineSeconds: 15,
      startupGraceSeconds: 0,
      maxRoundAttempts: 1_000_000,
      checkpointRetention: 3,
    },
  };
  writeFileSync(join(dir, 'coordinator.json'), JSON.stringify(config, null, 2), { mode: 0o600 });
  return { dir, config, coordinatorKeys, siteKeys };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function waitConnected(client: CoordinatorClient, timeoutMs: number): Promise<boolean> {
  if (client.connected) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    client.once('connected', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export async function runProtocolFuzz(options: FuzzOptions = {}): Promise<FuzzReport> {
  const seed = options.seed ?? 1;
  const target = options.messages ?? 10_000;
  const minRounds = options.minRounds ?? 3;
  const timeoutMs = options.timeoutMs ?? 15 * 60_000;
  const log = options.log ?? (() => {});
  const fuzz = new Fuzz(mulberry32(seed));
  const legitIds = Array.from({ length: options.legitSites ?? 2 }, (_, i) => `site-${i + 1}`);
  const fed = createFederation(legitIds);
  const started = Date.now();
  const tally = new FuzzTally();
  const unwatch = tally.watchProcess();

  let coordinator: RunningCoordinator | null = null;
  const clients: CoordinatorClient[] = [];
  const rss = { start: 0, peak: 0, end: 0 };
  const sampler = setInterval(() => (rss.peak = Math.max(rss.peak, process.memoryUsage().rss / MiB)), 250);
  sampler.unref();
  const run: FuzzRunState = { fuzzing: false, fuzzerReconnects: 0, roundsWhileFuzzing: 0, honestAccepted: 0 };
  let healthyAtEnd = false;
  const problems: string[] = [];
  try {
    coordinator = await startCoordinator(fed.config, {
      baseDir: fed.dir,
      initialWeights: () => fuzzWeights(),
      log: (level, msg, fields) => {
        if (level === 'error') tally.crashes.push(`coordinator error log: ${msg} ${JSON.stringify(fields ?? {}).slice(0, 300)}`);
      },
    });
    const c = coordinator;
    const url = c.url;
    c.events.on('internal-error', (e: CoordinatorEvents['internal-error']) => tally.crashes.push(`internal-error event: ${e.message}`));
    c.events.on('round-complete', (e: CoordinatorEvents['round-complete']) => {
      if (!run.fuzzing) return;
      run.roundsWhileFuzzing++;
      run.honestAccepted += e.accepted.filter((id) => legitIds.includes(id)).length;
    });
    const { postClient, postSocket } = startFuzzClients({ url, fed, legitIds, fuzz, tally, run, clients });

    // Warm-up: one honest round, so RSS is measured from a running federation.
    await firstRound(c, 120_000);
    rss.start = process.memoryUsage().rss / MiB;
    rss.peak = rss.start;
    run.fuzzing = true;
    const deadline = started + timeoutMs;
    let addressCounter = 0;
    const loops: FuzzLoopContext = {
      fuzz,
      tally,
      url,
      done: () => (tally.total() >= target && run.roundsWhileFuzzing >= minRounds) || Date.now() > deadline,
      ctx: () => ({ siteId: fuzz.pick([...legitIds, FUZZ_POST, 'unknown-site', 'x']), round: c.state().currentRound?.round ?? c.state().lastCompletedRound + 1, experimentId: 'fuzz' }),
      fuzzAddress: () => `127.0.${9 + ((addressCounter >> 8) % 4)}.${2 + (addressCounter++ % 250)}`,
    };
    const progress = logProgress(tally, run, log);
    const postAuth = () => postAuthLoop(loops, postClient, postSocket);
    await Promise.all([postAuth(), postAuth(), postAuth(), postAuth(), preAuthLoop(loops), preAuthLoop(loops), preAuthLoop(loops), rawLoop(loops), rawLoop(loops)]);
    clearInterval(progress);
    run.fuzzing = false;
    if (Date.now() > deadline) problems.push(`timed out after ${Math.round(timeoutMs / 1000)} s`);

    // The coordinator is still healthy and the honest sites are still in.
    await sleep(500);
    healthyAtEnd = await fetch(`${url}/healthz`)
      .then((r) => r.json() as Promise<{ ok?: boolean }>)
      .then((b) => b.ok === true)
      .catch(() => false);
    for (const [i, id] of legitIds.entries()) if (!clients[i]?.connected) problems.push(`honest site ${id} is not connected at the end`);
  } catch (e) {
    problems.push(`fuzz run failed: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    clearInterval(sampler);
    rss.end = process.memoryUsage().rss / MiB;
    await Promise.allSettled(clients.map((cl) => cl.stop()));
    await coordinator?.stop().catch((e: unknown) => problems.push(`coordinator stop failed: ${String(e)}`));
    // Late errors of the closing sockets are not the coordinator's.
    await sleep(100);
    unwatch();
    rmSync(fed.dir, { recursive: true, force: true });
  }

  problems.push(...judgeFuzzRun(options, tally, run, rss, healthyAtEnd, target, minRounds));
  return {
    seed,
    messages: { ...tally.counts, total: tally.total() },
    byType: Object.fromEntries(tally.byTypeCounts), // own properties, even '__proto__'
    replies: Object.fromEntries(tally.replies),
    crashes: tally.crashes,
    fuzzerReconnects: run.fuzzerReconnects,
    roundsCompletedWhileFuzzing: run.roundsWhileFuzzing,
    honestUpdatesAccepted: run.honestAccepted,
    rssMB: { start: rss.start, peak: rss.peak, end: rss.end },
    healthyAtEnd,
    durationMs: Date.now() - started,
    problems,
  };
}

/** Messages sent per class and type, acknowledgements per type:code, and every crash seen. */
class FuzzTally {
  readonly counts: Record<MessageClass, number> = { preAuth: 0, postAuth: 0, chunkStream: 0, rawFrames: 0 };
  // A Map, not an object: junk event names such as '__proto__' must not pollute Object.prototype
  // (an inherited 'preAuth' key would then fail every strict schema in the coordinator).
  readonly byTypeCounts = new Map<string, Partial<Record<MessageClass, number>>>();
  readonly replies = new Map<string, number>();
  readonly crashes: string[] = [];

  count(cls: MessageClass, type: string): void {
    this.counts[cls]++;
    if (cls === 'rawFrames') return;
    const name = type.slice(0, 40);
    const t = this.byTypeCounts.get(name) ?? {};
    this.byTypeCounts.set(name, t);
    t[cls] = (t[cls] ?? 0) + 1;
  }

  total(): number {
    return this.counts.preAuth + this.counts.postAuth + this.counts.chunkStream + this.counts.rawFrames;
  }

  noteReply(reply: unknown): void {
    const r = reply as { type?: unknown; payload?: { code?: unknown } } | null;
    const key = r && typeof r.type === 'string' ? `${r.type}:${typeof r.payload?.code === 'string' ? r.payload.code : '-'}` : 'no-ack';
    this.replies.set(key, (this.replies.get(key) ?? 0) + 1);
    if (key.endsWith(':internal-error')) this.crashes.push(`internal-error reply: ${JSON.stringify(reply).slice(0, 300)}`);
  }

  /** Records uncaught exceptions and unhandled rejections of this process as crashes; returns the undo. */
  watchProcess(): () => void {
    const onUncaught = (e: unknown) => this.crashes.push(`uncaught exception: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    const onRejection = (e: unknown) => this.crashes.push(`unhandled rejection: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onRejection);
    return () => {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onRejection);
    };
  }
}

/** What the coordinator's events and the fuzz clients report while the run goes on. */
interface FuzzRunState {
  /** Set after the warm-up round: rounds and mutations count from then on. */
  fuzzing: boolean;
  fuzzerReconnects: number;
  roundsWhileFuzzing: number;
  honestAccepted: number;
}

interface FuzzClientsRequest {
  url: string;
  fed: Federation;
  legitIds: string[];
  fuzz: Fuzz;
  tally: FuzzTally;
  run: FuzzRunState;
  /** Every client started is added here (honest sites first, in legitIds order), to be stopped at the end. */
  clients: CoordinatorClient[];
}

/** Starts the honest sites, the chunk-stream fuzzer and the post-auth fuzzer (whose socket postSocket() returns). */
function startFuzzClients({ url, fed, legitIds, fuzz, tally, run, clients }: FuzzClientsRequest): { postClient: CoordinatorClient; postSocket: () => Socket | null } {
  const newClient = (siteId: string, instrument?: (socket: Socket) => void) => {
    const keys = fed.siteKeys.get(siteId);
    if (!keys) throw new Error(`fuzz: no keys for site '${siteId}'`);
    const client = new CoordinatorClient({
      url,
      siteId,
      keys,
      coordinatorPublicKey: fed.coordinatorKeys,
      chunkBytes: MiB,
      backoff: { initialMs: 100, maxMs: 500 },
      instrumentSocket: instrument,
    });
    clients.push(client);
    return client;
  };

  // Honest sites: they must keep completing rounds whatever the fuzzers do.
  legitIds.forEach((id, i) => {
    const client = newClient(id);
    client.onTask(async (task, ctl) => {
      ctl.progress(task.steps, task.steps);
      return { update: honestUpdate(task.global, i, task.round), samples: 10, metrics: METRICS };
    });
    client.start();
  });
  // The chunk-stream fuzzer: an enrolled site whose real uploads are mutated in flight.
  const chunkClient = newClient(FUZZ_CHUNKS, (socket) =>
    socket.onAnyOutgoing((type: string, payload: unknown) => {
      if (!run.fuzzing || !type.startsWith('update-') || payload === null || typeof payload !== 'object' || !fuzz.chance(0.5)) return;
      const record = payload as Record<string, unknown>;
      const mutated = fuzz.mutateUpload(type, { ...record });
      for (const k of Object.keys(record)) if (!(k in mutated)) delete record[k];
      Object.assign(record, mutated);
      tally.count('chunkStream', type);
    }),
  );
  chunkClient.onTask(async (task) => ({ update: honestUpdate(task.global, 7, task.round), samples: 10, metrics: METRICS }));
  chunkClient.start();
  // The post-auth fuzzer: an enrolled site that sends anything on its authenticated socket.
  let postSocket: Socket | null = null;
  const postClient = newClient(FUZZ_POST, (socket) => (postSocket = socket));
  postClient.on('disconnected', () => run.fuzzerReconnects++);
  postClient.start();
  return { postClient, postSocket: () => postSocket };
}

function firstRound(c: RunningCoordinator, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no round completed within ${timeoutMs / 1000} s of start-up`)), timeoutMs);
    c.events.once('round-complete', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** One progress line per 1000 messages sent. */
function logProgress(tally: FuzzTally, run: FuzzRunState, log: (line: string) => void): NodeJS.Timeout {
  const { counts } = tally;
  let lastReport = 0;
  const progress = setInterval(() => {
    if (tally.total() - lastReport < 1000) return;
    lastReport = tally.total();
    log(`  ${tally.total()} messages (pre-auth ${counts.preAuth}, post-auth ${counts.postAuth}, chunk streams ${counts.chunkStream}, raw frames ${counts.rawFrames}), ${run.roundsWhileFuzzing} rounds, RSS ${(process.memoryUsage().rss / MiB).toFixed(0)} MB, ${tally.crashes.length} crashes`);
  }, 1000);
  progress.unref();
  return progress;
}

/** What the fuzz loops share. */
interface FuzzLoopContext {
  fuzz: Fuzz;
  tally: FuzzTally;
  url: string;
  /** Enough messages and rounds, or past the deadline. */
  done: () => boolean;
  /** Plausible ids for message templates. */
  ctx: () => { siteId: string; round: number; experimentId: string };
  /** A fresh loopback source address, so the per-address connection limits do not stop the fuzz. */
  fuzzAddress: () => string;
}

/** Anything, in any shape, on the authenticated socket of the post-auth fuzzer (waiting while it reconnects). */
async function postAuthLoop({ fuzz, tally, done, ctx }: FuzzLoopContext, postClient: CoordinatorClient, postSocket: () => Socket | null): Promise<void> {
  while (!done()) {
    const socket = postSocket();
    if (!postClient.connected || !socket?.connected) {
      await waitConnected(postClient, 10_000);
      continue;
    }
    const type = fuzz.eventName();
    const payload = fuzz.mutate(fuzz.template(type, ctx()));
    const shape = fuzz.int(10);
    try {
      if (shape === 0) socket.emit(type);
      else if (shape === 1) socket.emit(type, payload, fuzz.hostile());
      else if (shape === 2) socket.emit(type, payload);
      else {
        tally.count('postAuth', type);
        tally.noteReply(await socket.timeout(5000).emitWithAck(type, payload).catch(() => null));
        continue;
      }
      tally.count('postAuth', type);
    } catch {
      // socket.io-client refuses reserved event names locally: nothing was sent
    }
    if (fuzz.chance(0.05)) await sleep(1);
  }
}

/** Fresh unauthenticated connections, each sending a few mutated handshakes or other messages. */
async function preAuthLoop({ fuzz, tally, url, done, ctx, fuzzAddress }: FuzzLoopContext): Promise<void> {
  while (!done()) {
    const socket = connectSocket(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 5000, localAddress: fuzzAddress() } as Parameters<typeof connectSocket>[1]);
    const opened = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('connect_error', () => resolve(false));
    });
    for (let k = 1 + fuzz.int(6); opened && k > 0 && socket.connected && !done(); k--) {
      const type = fuzz.chance(0.6) ? fuzz.pick(['hello', 'auth']) : fuzz.eventName();
      const payload = fuzz.chance(0.8) ? fuzz.mutate(fuzz.template(type, ctx())) : fuzz.template(type, ctx());
      try {
        tally.count('preAuth', type);
        tally.noteReply(await socket.timeout(3000).emitWithAck(type, payload).catch(() => null));
      } catch {
        tally.counts.preAuth--; // reserved name: refused by the client library, never sent
      }
    }
    socket.disconnect();
    if (!opened) await sleep(20);
  }
}

/** Raw WebSocket frames (below socket.io) on fresh connections. */
async function rawLoop({ fuzz, tally, url, done, fuzzAddress }: FuzzLoopContext): Promise<void> {
  while (!done()) {
    const ws = await RawWebSocket.open(url, { localAddress: fuzzAddress(), timeoutMs: 5000 }).catch(() => null);
    if (!ws) {
      await sleep(20);
      continue;
    }
    for (let k = 1 + fuzz.int(8); k > 0 && !ws.closed && !done(); k--) {
      const f = fuzz.rawFrame();
      if (ws.writeFrame(clientFrame(f.opcode, f.data))) tally.count('rawFrames', 'raw');
      await sleep(1);
    }
    await ws.closedWithin(100);
    ws.destroy();
  }
}

/** The run's problems beyond the ones found while it ran: crashes, too little fuzz, RSS growth, untried types. */
function judgeFuzzRun(options: FuzzOptions, tally: FuzzTally, run: FuzzRunState, rss: { start: number; peak: number }, healthyAtEnd: boolean, target: number, minRounds: number): string[] {
  const maxRssGrowthMB = options.maxRssGrowthMB ?? 300;
  const { crashes, byTypeCounts } = tally;
  const problems: string[] = [];
  // Whatever was sent ('__proto__', 'constructor' keys…), nothing may have polluted the prototype.
  const polluted = Object.keys(Object.prototype);
  if (polluted.length > 0) crashes.push(`Object.prototype polluted with ${polluted.join(', ')}`);
  const firstCrash = crashes[0];
  if (firstCrash !== undefined) problems.push(`${crashes.length} crash(es); first: ${firstCrash.slice(0, 500)}`);
  if (tally.total() < target) problems.push(`only ${tally.total()} of ${target} messages were sent`);
  if (run.roundsWhileFuzzing < minRounds) problems.push(`only ${run.roundsWhileFuzzing} of ${minRounds} rounds completed while fuzzing`);
  if (!healthyAtEnd) problems.push('/healthz did not answer ok after the run');
  if (rss.peak - rss.start > maxRssGrowthMB) problems.push(`RSS grew by ${(rss.peak - rss.start).toFixed(0)} MB (limit ${maxRssGrowthMB} MB)`);
  for (const type of options.requireEveryType === false ? [] : new Set([...SITE_MESSAGE_TYPES, ...COORDINATOR_MESSAGE_TYPES])) {
    if (!byTypeCounts.get(type)?.preAuth) problems.push(`message type '${type}' was never sent before authentication`);
    if (!byTypeCounts.get(type)?.postAuth) problems.push(`message type '${type}' was never sent after authentication`);
  }
  return problems;
}

/** The report in a few lines. */
export function formatFuzzReport(r: FuzzReport): string {
  const m = r.messages;
  const topReplies = Object.entries(r.replies)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 8)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  return [
    `fuzz seed ${r.seed}: ${m.total} mutated messages in ${(r.durationMs / 1000).toFixed(1)} s — before authentication ${m.preAuth}, after ${m.postAuth}, inside upload chunk streams ${m.chunkStream}, raw frames ${m.rawFrames}; ${Object.keys(r.byType).length} message types/names`,
    `  replies: ${topReplies}`,
    `  crashes: ${r.crashes.length}; fuzzer reconnects after being closed for abuse: ${r.fuzzerReconnects}; rounds completed while fuzzing: ${r.roundsCompletedWhileFuzzing} (${r.honestUpdatesAccepted} honest updates accepted); /healthz ok at the end: ${r.healthyAtEnd}`,
    `  RSS (this process: coordinator + clients): ${r.rssMB.start.toFixed(0)} MB after warm-up, peak ${r.rssMB.peak.toFixed(0)} MB, end ${r.rssMB.end.toFixed(0)} MB`,
    r.problems.length === 0 ? '  PASS' : `  FAIL: ${r.problems.join('; ')}`,
  ].join('\n');
}
