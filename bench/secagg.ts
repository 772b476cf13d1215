/**
 * Secure-aggregation cost benchmark, in process (no network): one round of the masking and
 * unmasking math for n sites, against the plain float aggregation it replaces, on the cpu-small
 * model's parameter count and on a 19M-parameter vector (the thesis U-Net's size).
 *
 * Plain round: each site's update travels as float32 (4d bytes); the coordinator folds it into a
 * float64 sample-weighted sum (the loop of coordinator/strategies/streaming-mean.ts).
 * Secure round: every step of shared/secagg's site and coordinator sides — key pairs, Shamir
 * shares and envelopes, fixed-point encoding, mask expansion (1 self + one per neighbour),
 * summation mod 2^32, reconstruction and unmasking — with the unmasked sum checked bit for bit
 * against the plain sum of the encoded vectors. A dropout's extra coordinator cost (rebuilding one
 * site's key from shares and removing its pairwise masks from the sum) is timed on its own.
 *
 * Times are CPU time of this single-threaded process (process.cpuUsage), which a loaded machine
 * distorts far less than wall time; wall time is reported too. Bytes are message payloads
 * (keys, envelopes, vectors, shares, ids), without transport framing, chunk sealing or signatures,
 * which both modes pay alike. Real rounds through the coordinator and site clients, with the
 * network protocol, are `--federated` (bench/secagg-rounds.ts).
 */
import { loadavg } from 'node:os';
import { experimentLayout, layoutManifest } from '../shared/model/index.ts';
import { totalParameters } from '../shared/weights.ts';
import { mulberry32 } from '../shared/random.ts';
import {
  addInto,
  addMaskInPlace,
  cappedWeight,
  combineShares,
  completeGraph,
  encodeWeightedUpdate,
  ENVELOPE_BYTES,
  FIELD_BYTES,
  fixedPointParams,
  generateX25519KeyPair,
  hararyGraph,
  pairwiseMaskSeed,
  SecAggServerRound,
  SecAggSiteRound,
  splitSecret,
  X25519_KEY_BYTES,
  type MaskingGraph,
} from '../shared/secagg/index.ts';

export interface SecAggBenchOptions {
  /** Site counts (default 3, 10, 32). */
  sites?: number[];
  /** Model sizes (default cpu-small and 19M). */
  sizes?: { name: string; parameters: number }[];
  /** Neighbours per site (SecAgg+ Harary graph); undefined = complete graph (SecAgg). */
  neighbours?: number;
  log?: (line: string) => void;
}

export interface Timing {
  cpuMs: number;
  wallMs: number;
}

export interface SecAggBenchRow {
  model: string;
  parameters: number;
  sites: number;
  threshold: number;
  /** Neighbours of each site (n − 1 for the complete graph). */
  neighbours: number;
  plain: { coordinatorAggregate: Timing; uploadBytesPerSite: number; downloadBytesPerSite: number };
  secure: {
    /** Mean over sites of each site-side step. */
    site: { keys: Timing; shares: Timing; encode: Timing; mask: Timing; respond: Timing; total: Timing };
    coordinator: { sum: Timing; unmask: Timing; total: Timing };
    /** Extra coordinator work for one site dropping after the share step. */
    perDroppedSite: Timing;
    uploadBytesPerSite: number;
    downloadBytesPerSite: number;
  };
  /** The unmasked sum equalled the sum of the encoded vectors, bit for bit. */
  verified: boolean;
}

export interface SecAggBenchReport {
  rows: SecAggBenchRow[];
  machine: { loadAverageStart: number[]; loadAverageEnd: number[]; node: string };
}

/** The cpu-small U-Net of the default simulation (brain: 4 modalities, 4 labels, patch mode). */
export function cpuSmallParameterCount(): number {
  const layout = experimentLayout({
    model: { mode: 'patch', norm: 'instance', preset: 'cpu-small' },
    labels: { 0: 'background', 1: 'edema', 2: 'non-enhancing tumor', 3: 'enhancing tumour' },
    modalities: { 0: 'FLAIR', 1: 'T1w', 2: 't1gd', 3: 'T2w' },
  });
  return totalParameters(layoutManifest(layout));
}

class Stopwatch {
  cpuMs = 0;
  wallMs = 0;
  time<T>(fn: () => T): T {
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    try {
      return fn();
    } finally {
      const c = process.cpuUsage(c0);
      this.cpuMs += (c.user + c.system) / 1000;
      this.wallMs += performance.now() - w0;
    }
  }
  per(n: number): Timing {
    return { cpuMs: this.cpuMs / n, wallMs: this.wallMs / n };
  }
}

const sum = (...t: Timing[]): Timing => ({ cpuMs: t.reduce((a, b) => a + b.cpuMs, 0), wallMs: t.reduce((a, b) => a + b.wallMs, 0) });
const idBytes = (id: string) => Buffer.byteLength(id);

function benchOne(model: string, d: number, n: number, neighbours: number | undefined): SecAggBenchRow {
  const ids = Array.from({ length: n }, (_, i) => `site-${String(i).padStart(2, '0')}`);
  // A majority of the share holders: n for SecAgg, the k neighbours plus the site for SecAgg+.
  const holders = neighbours === undefined ? n : Math.min(n, neighbours + 1);
  const threshold = Math.floor(holders / 2) + 1;
  const ctx = { experiment: 'bench-secagg', round: 1 };
  const rng = mulberry32(1234 + n);
  // One synthetic update per site, made lazily so at most one float32 copy is alive at a time.
  const updateOf = (i: number) => {
    const u = new Float32Array(d);
    const scale = 0.01 * (1 + (i % 3));
    for (let j = 0; j < d; j++) u[j] = (rng() * 2 - 1) * scale;
    return u;
  };
  const samples = ids.map((_, i) => 20 + 7 * i);

  // The plain run draws its updates first, the secure run the next ones from the same generator.
  const plainAggregate = benchPlainAggregate(d, n, updateOf, samples);
  const secure = benchSecureRound({ ids, d, threshold, neighbours, ctx, updateOf, samples });
  const degree = secure.graph.get(ids[0] ?? '')?.length ?? n - 1;
  const perDrop = benchDroppedSite(ctx, d, degree, threshold);

  const t = secure.timings;
  const siteTotal = sum(t.keys.per(n), t.shares.per(n), t.encode.per(n), t.mask.per(n), t.respond.per(n));
  const vectorBytes = 4 * (d + 1);
  const bytes = secure.bytes;
  return {
    model,
    parameters: d,
    sites: n,
    threshold,
    neighbours: degree,
    plain: { coordinatorAggregate: plainAggregate, uploadBytesPerSite: 4 * d, downloadBytesPerSite: 4 * d },
    secure: {
      site: { keys: t.keys.per(n), shares: t.shares.per(n), encode: t.encode.per(n), mask: t.mask.per(n), respond: t.respond.per(n), total: siteTotal },
      coordinator: { sum: t.coordSum.per(1), unmask: t.coordUnmask.per(1), total: sum(t.coordSum.per(1), t.coordUnmask.per(1)) },
      perDroppedSite: perDrop,
      uploadBytesPerSite: Math.round(2 * X25519_KEY_BYTES + (bytes.envelopesUp + bytes.sharesUp) / n + vectorBytes),
      // roster (ids + 2 keys each), envelopes addressed to the site, the request, and the new checkpoint.
      downloadBytesPerSite: Math.round(ids.reduce((b, id) => b + idBytes(id) + 2 * X25519_KEY_BYTES, 0) + (bytes.envelopesDown + bytes.requestsDown) / n + 4 * d),
    },
    verified: secure.verified,
  };
}

/** Plain: float32 upload, float64 weighted sum at the coordinator; the coordinator's time. */
function benchPlainAggregate(d: number, n: number, updateOf: (i: number) => Float32Array, samples: readonly number[]): Timing {
  const plainAggregate = new Stopwatch();
  const acc = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    const u = updateOf(i);
    const w = samples[i] ?? 1;
    plainAggregate.time(() => {
      for (let j = 0; j < d; j++) acc[j]! += w * u[j]!; // j < d: in range, no per-element check
    });
  }
  const total = samples.reduce((a, b) => a + b, 0);
  const mean = new Float32Array(d);
  plainAggregate.time(() => {
    for (let j = 0; j < d; j++) mean[j] = acc[j]! / total;
  });
  return plainAggregate.per(1);
}

interface SecureRoundRequest {
  ids: string[];
  d: number;
  threshold: number;
  neighbours: number | undefined;
  ctx: { experiment: string; round: number };
  updateOf: (i: number) => Float32Array;
  samples: readonly number[];
}

/** Secure: one SecAgg(+) round with every site, each phase timed, message bytes counted, the sum checked. */
function benchSecureRound({ ids, d, threshold, neighbours, ctx, updateOf, samples }: SecureRoundRequest) {
  const n = ids.length;
  const params = fixedPointParams({ maxSites: Math.max(n, 2) });
  const sampleCap = Math.max(...samples);
  const keys = new Stopwatch();
  const shares = new Stopwatch();
  const encode = new Stopwatch();
  const mask = new Stopwatch();
  const respond = new Stopwatch();
  const coordSum = new Stopwatch();
  const coordUnmask = new Stopwatch();
  const server = new SecAggServerRound(ctx, threshold, d + 1);
  const sites = ids.map((id) => new SecAggSiteRound(id, ctx, threshold));
  for (const s of sites) server.addAdvertisement(keys.time(() => s.advertiseKeys()));
  const graph: MaskingGraph | undefined = neighbours === undefined ? undefined : hararyGraph(ids, neighbours, new Uint8Array(32).fill(7));
  const { roster, graph: used } = server.closeAdvertisements(graph ?? completeGraph(ids));
  let envelopesUp = 0;
  for (const s of sites) {
    const envs = shares.time(() => s.shareKeys(roster, used));
    envelopesUp += envs.reduce((b, e) => b + ENVELOPE_BYTES + idBytes(e.from) + idBytes(e.to), 0);
    server.addEnvelopes(s.siteId, envs);
  }
  server.closeSharing();
  let envelopesDown = 0;
  for (const s of sites) {
    const envs = server.envelopesFor(s.siteId);
    envelopesDown += envs.reduce((b, e) => b + ENVELOPE_BYTES + idBytes(e.from) + idBytes(e.to), 0);
    shares.time(() => s.receiveShares(envs));
  }
  const expected = new Uint32Array(d + 1);
  for (let i = 0; i < n; i++) {
    const site = sites[i];
    if (!site) continue;
    const u = updateOf(i);
    const encoded = encode.time(() => encodeWeightedUpdate(u, params, { weight: cappedWeight(samples[i] ?? 1, sampleCap) }).vector);
    addInto(expected, encoded);
    const masked = mask.time(() => site.maskedInput(encoded));
    coordSum.time(() => server.addMaskedInput(site.siteId, masked));
  }
  server.closeMaskedInputs();
  let sharesUp = 0;
  let requestsDown = 0;
  for (const s of sites) {
    const request = server.unmaskingRequest(s.siteId);
    requestsDown += [...request.dropped, ...request.survivors].reduce((b, id) => b + idBytes(id), 0);
    const decision = respond.time(() => s.unmaskingResponse(request));
    if (!decision.ok) throw new Error(decision.reason);
    sharesUp += [...decision.selfMaskShares, ...decision.keyShares].reduce((b, r) => b + FIELD_BYTES + 4 + idBytes(r.owner), 0);
    server.addUnmaskingResponse(s.siteId, { selfMaskShares: decision.selfMaskShares, keyShares: decision.keyShares });
  }
  const outcome = coordUnmask.time(() => server.finish());
  const verified = Buffer.from(outcome.sum.buffer, outcome.sum.byteOffset, outcome.sum.byteLength).equals(Buffer.from(expected.buffer));
  return {
    timings: { keys, shares, encode, mask, respond, coordSum, coordUnmask },
    bytes: { envelopesUp, envelopesDown, sharesUp, requestsDown },
    graph: used,
    verified,
  };
}

/** One dropout's extra coordinator work: rebuild its key from t shares, remove its masks. */
function benchDroppedSite(ctx: { experiment: string; round: number }, d: number, degree: number, threshold: number): Timing {
  const perDrop = new Stopwatch();
  const dropped = generateX25519KeyPair();
  const peers = Array.from({ length: degree }, () => generateX25519KeyPair().publicKey);
  const keyShares = splitSecret(dropped.secretKey, Array.from({ length: threshold }, (_, i) => i + 1), threshold);
  const scratch = new Uint32Array(d + 1);
  perDrop.time(() => {
    const secretKey = combineShares(keyShares, threshold);
    peers.forEach((pk, k) => addMaskInPlace(scratch, pairwiseMaskSeed(ctx, { id: 'dropped', secretKey, publicKey: dropped.publicKey }, { id: `peer-${k}`, publicKey: pk }), -1));
  });
  return perDrop.per(1);
}

export function runSecAggBench(options: SecAggBenchOptions = {}): SecAggBenchReport {
  const log = options.log ?? (() => {});
  const sizes = options.sizes ?? [
    { name: 'cpu-small', parameters: cpuSmallParameterCount() },
    { name: '19M', parameters: 19_000_000 },
  ];
  const siteCounts = options.sites ?? [3, 10, 32];
  const loadAverageStart = loadavg();
  // Warm the JIT on a small round so the first reported row is not a compile-time measurement.
  benchOne('warm-up', 4096, 3, undefined);
  const rows: SecAggBenchRow[] = [];
  for (const size of sizes) {
    for (const n of siteCounts) {
      const row = benchOne(size.name, size.parameters, n, options.neighbours !== undefined && options.neighbours < n - 1 ? options.neighbours : undefined);
      rows.push(row);
      log(formatRow(row));
    }
  }
  return { rows, machine: { loadAverageStart, loadAverageEnd: loadavg(), node: process.version } };
}

const ms = (t: Timing) => `${t.cpuMs.toFixed(t.cpuMs < 10 ? 1 : 0)} ms`;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(b < 2 ** 20 ? 3 : 1)} MiB`;

export function formatHeader(): string {
  return (
    'model       params      sites  t   nbrs | plain: coord agg   up/site      | secure: site (keys+shares / encode / mask / total)        coord (sum / unmask)   +1 dropout   up/site      down/site    | exact\n' +
    '(CPU time of this process; site times are per site, mean over sites)'
  );
}

export function formatRow(r: SecAggBenchRow): string {
  const s = r.secure;
  return (
    `${r.model.padEnd(10)}  ${String(r.parameters).padStart(9)}  ${String(r.sites).padStart(5)}  ${String(r.threshold).padStart(2)}  ${String(r.neighbours).padStart(4)} | ` +
    `${ms(r.plain.coordinatorAggregate).padStart(10)}  ${mib(r.plain.uploadBytesPerSite).padStart(11)} | ` +
    `${ms(sum(s.site.keys, s.site.shares)).padStart(9)} / ${ms(s.site.encode).padStart(8)} / ${ms(s.site.mask).padStart(9)} / ${ms(s.site.total).padStart(9)}      ` +
    `${ms(s.coordinator.sum).padStart(8)} / ${ms(s.coordinator.unmask).padStart(8)}   ${ms(s.perDroppedSite).padStart(9)}  ${mib(s.uploadBytesPerSite).padStart(11)}  ${mib(s.downloadBytesPerSite).padStart(11)} | ${r.verified ? 'yes' : 'NO'}`
  );
}
