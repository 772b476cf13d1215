/**
 * Every message exchanged between a site agent and the coordinator over socket.io, as zod
 * schemas. The event name is the message type; the single argument is the payload.
 *
 * Conversation (→ coordinator, ← site; "ack" = socket.io acknowledgement, carrying a Reply):
 *   hello              ack challenge | auth-fail | error
 *   auth               ack auth-ok | auth-fail | error
 *   ← round-task       (pushed; site answers with status / error events)
 *   checkpoint-request ack checkpoint-chunk | error
 *   update-begin       ack transfer-status | error   (idempotent: the resume point if it exists)
 *   update-resume      ack transfer-status | error   ("which index next?" after a reconnect)
 *   update-chunk       ack chunk-ack | error
 *   update-commit      ack commit-ok | error
 *   status, error      (events, no ack)
 *   site-info          (event, no ack: backend and planned patch/batch for the dashboard; no data)
 *   round-decline      (event, no ack, site-signed: this site cannot take part in the round, and why)
 *   final-evaluation   (event, no ack, site-signed: after experiment-complete, test-split scores of the final model)
 *   ← experiment       (pushed after auth: the signed experiment description)
 *   ← round-cancel     (pushed: stop working on a round that closed without this site)
 *   ← experiment-complete (pushed after the last round: the final signed checkpoint)
 *   secure aggregation (fit.secureAggregation in the task; signed both ways, bound to round + attempt):
 *   secagg-keys        ack secagg-ack | error   (step 0: fresh public keys)
 *   ← secagg-roster    (pushed: every site's keys)        secagg-shares  ack secagg-ack | error
 *   ← secagg-envelopes (pushed: shares for this site)     then update-* with payload 'secagg-ring'
 *   ← secagg-unmask    (pushed: who dropped/survived)     secagg-reveal  ack secagg-ack | error
 *
 * Wire vs typed form: keys, nonces and signatures travel as base64 strings, bulk data as binary
 * attachments (Buffer / ArrayBuffer / Uint8Array). `parseMessage` turns the wire form into typed
 * data with Uint8Array fields; `encodeMessage` does the reverse and validates outgoing messages.
 */
import { z } from 'zod';
import { PatchFedError } from '../errors.ts';
import { SEAL_NONCE_BYTES, SEAL_OVERHEAD_BYTES, SIGNATURE_BYTES } from '../crypto/seal.ts';
import { canonicalJson, transcript } from '../crypto/encoding.ts';
import { StrategySpecSchema } from '../config/strategy.ts';
import { AggregationSpecSchema } from '../config/aggregation.ts';
import { ENVELOPE_BYTES } from '../secagg/share-envelope.ts';
import { FIELD_BYTES } from '../secagg/shamir.ts';
import { tensorNameSchema } from '../codec/manifest.ts';
import {
  MAX_ARRAY_LENGTH,
  MAX_CHUNK_BYTES,
  MAX_CIPHERTEXT_BYTES,
  MAX_CONTROL_MESSAGE_BYTES,
  MAX_DICE_LABELS,
  MAX_ERROR_TEXT,
  MAX_MESSAGE_DEPTH,
  MAX_PAYLOAD_BYTES,
  MIN_CHUNK_BYTES,
  MAX_SECAGG_SITES,
  PROTOCOL_VERSION,
} from './limits.ts';

// ---- field schemas ----

/** Any Uint8Array (Buffer included), typed without pinning the backing buffer type. */
function bytesSchema() {
  return z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'expected binary data');
}

/** Fixed-length bytes, base64 on the wire. */
function base64Bytes(length: number) {
  const maxChars = 4 * Math.ceil(length / 3);
  return z.codec(
    z.base64().max(maxChars),
    bytesSchema().refine((b) => b.length === length, `must be ${length} bytes`),
    {
      decode: (text) => new Uint8Array(Buffer.from(text, 'base64')),
      encode: (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
    },
  );
}

/** Binary attachment: Buffer/Uint8Array (Node) or ArrayBuffer (browsers), bounded, as Uint8Array. */
function binary(minBytes: number, maxBytes: number) {
  const input = z.union([bytesSchema(), z.instanceof(ArrayBuffer)]).superRefine((b, ctx) => {
    if (b.byteLength < minBytes || b.byteLength > maxBytes) {
      ctx.addIssue({ code: 'custom', message: `binary data must be ${minBytes}..${maxBytes} bytes, got ${b.byteLength}` });
    }
  });
  return z.codec(input, bytesSchema(), {
    decode: (b) => (b instanceof Uint8Array ? b : new Uint8Array(b)),
    encode: (b) => b,
  });
}

export const siteIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits, . _ - (starting with a letter or digit)');
export const experimentIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be 1-128 letters, digits, . _ - (starting with a letter or digit)');
/** Chosen by the sender; also names a temp file on the receiver, hence the tight alphabet. */
export const transferIdSchema = z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, 'must be 16-64 letters, digits, _ or -');
export const sessionIdSchema = z.string().regex(/^[0-9a-f]{32}$/, 'must be 32 lower-case hex digits');
export const sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits');
const errorCodeSchema = z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'must be a lower-case code like "bad-message"');
const errorTextSchema = z.string().max(MAX_ERROR_TEXT);
const round = z.int().min(0).max(1_000_000);
const version = z.int().min(0).max(1_000_000_000);
const count = (max: number) => z.int().min(0).max(max);
const maxChunkCount = Math.ceil(MAX_PAYLOAD_BYTES / MIN_CHUNK_BYTES);
const labelNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$/, 'must be 1-64 letters, digits, space, . _ -');

/**
 * What a site reports with its update besides the sample count (README "What leaves a site").
 * Every field is optional: a site may withhold any of them (site config federation.withhold).
 */
export const metricsSchema = z.strictObject({
  loss: z.number().min(0).optional(),
  /** Mean Dice per label name on the site's validation split (aggregate only, never per case). */
  dice: z
    .record(labelNameSchema, z.number().min(0).max(1))
    .refine((d) => Object.keys(d).length <= MAX_DICE_LABELS, `at most ${MAX_DICE_LABELS} labels`)
    .optional(),
  timeMs: z.number().min(0).max(1e10).optional(),
  peakMemoryBytes: count(Number.MAX_SAFE_INTEGER).optional(),
  backend: z.string().regex(/^[a-z0-9-]{1,32}$/, 'must be a backend name like "cpu" or "wasm"').optional(),
  patch: z.array(z.int().min(1).max(4096)).length(3).optional(),
  batch: z.int().min(1).max(4096).optional(),
});
export type Metrics = z.output<typeof metricsSchema>;

/**
 * What one selected site is told to do in a round: exactly what the strategy's configureFit
 * returned for it (Flower's FitIns config). New strategies add their per-site fields here.
 */
/**
 * Secure aggregation's parameters for one round (shared/secagg): the site masks its update with
 * them instead of sending weights. Set by the coordinator's secure strategy wrapper; the site checks
 * that the sum of maxSites values cannot overflow before it uses them.
 */
export const secureAggregationFitSchema = z.strictObject({
  /** t of the round's Shamir sharing. */
  threshold: z.int().min(2).max(MAX_SECAGG_SITES),
  /** Most sites whose sum the fixed-point encoding must hold without overflow (the enrolled sites). */
  maxSites: z.int().min(2).max(MAX_SECAGG_SITES),
  /** Fixed-point scale 2^scaleBits. */
  scaleBits: z.int().min(0).max(30),
  /** Elements of ω·Δ are clamped to [−clipRange, clipRange]. */
  clipRange: z.number().min(1).max(1e6),
  /** ω = min(samples / sampleCap, 1). */
  sampleCap: z.int().min(1).max(1_000_000_000),
  /** SecAgg+ neighbours per site (absent: every site of the round). */
  neighbours: z.int().min(2).max(MAX_SECAGG_SITES).optional(),
});
export type SecureAggregationFit = z.output<typeof secureAggregationFitSchema>;

export const fitInstructionsSchema = z.strictObject({
  /** FedProx μ: the site adds (μ/2)·||w − w_global||² to its loss; 0 = plain local training. */
  proximalMu: z.number().min(0).max(1000),
  /** Tensors of the global model the site keeps its own values of (FedBN: every norm tensor). */
  localTensors: z.array(tensorNameSchema).max(MAX_ARRAY_LENGTH),
  /** Secure aggregation: mask the update with these parameters and upload the masked ring vector. */
  secureAggregation: secureAggregationFitSchema.optional(),
  /**
   * Site-level DP (DP-FedAvg): clip the update delta (every tensor but localTensors) to L2 norm
   * clipNorm before it is encoded; with noiseStd (distributed DP) then add N(0, noiseStd²) per value.
   */
  dp: z.strictObject({ clipNorm: z.number().gt(0).max(1e6), noiseStd: z.number().min(0).max(1e6).optional() }).optional(),
});
export type FitInstructions = z.output<typeof fitInstructionsSchema>;


const backendNameSchema = z.string().regex(/^[a-z0-9-]{1,32}$/, 'must be a backend name like "cpu" or "wasm"');
const patchSchema = z.array(z.int().min(1).max(4096)).length(3);

/** What a site tells the dashboard about itself: hardware and plan, never data. */
export const siteInfoSchema = z.strictObject({
  backend: backendNameSchema.optional(),
  gpu: z.boolean().optional(),
  memoryBudgetMB: z.number().positive().max(16 * 1024 * 1024).optional(),
  patch: patchSchema.optional(),
  batch: z.int().min(1).max(4096).optional(),
});
export type SiteInfoMessage = z.output<typeof siteInfoSchema>;

const labelIndexSchema = z.string().regex(/^\d{1,3}$/, 'must be a label index like "1"');
const printableSchema = (max: number) => z.string().min(1).max(max).regex(/^[\x20-\x7e]+$/, 'must be printable ASCII');

/**
 * The experiment as sites need it to build the same model and train it: the coordinator
 * config's experiment without its scheduling knobs. Signed by the coordinator (see
 * experimentSigningBytes), so a site trusts it exactly as far as it trusts the pinned key.
 */
export const experimentDescriptionSchema = z.strictObject({
  id: experimentIdSchema,
  task: printableSchema(200),
  labels: z.record(labelIndexSchema, printableSchema(64)).refine((r) => Object.keys(r).length <= MAX_DICE_LABELS, `at most ${MAX_DICE_LABELS} labels`),
  modalities: z.record(labelIndexSchema, printableSchema(64)).refine((r) => Object.keys(r).length <= 64, 'at most 64 modalities'),
  model: z.strictObject({
    mode: z.enum(['full', 'patch', 'cascade']),
    preset: z.enum(['tiny', 'cpu-small', 'cpu-medium', 'thesis']).optional(),
    base: z.int().min(1).max(256).optional(),
    depth: z.int().min(1).max(7).optional(),
    norm: z.enum(['batch', 'instance']),
    cascadeFactor: z.number().gt(0).lte(1),
  }),
  rounds: z.int().min(1).max(1_000_000),
  localSteps: z.int().min(1).max(10_000_000),
  learningRate: z.number().positive().max(1000),
  strategy: StrategySpecSchema,
  /** Secure aggregation etc. (absent: plain aggregation); a site refuses a plain task when it says secure. */
  aggregation: AggregationSpecSchema.optional(),
  seed: z.int(),
});
export type ExperimentDescription = z.output<typeof experimentDescriptionSchema>;

export const EXPERIMENT_LABEL = 'patchfed-experiment-v1';

/** The bytes the coordinator signs for an 'experiment' message (canonical JSON, domain-separated). */
export function experimentSigningBytes(description: ExperimentDescription): Uint8Array {
  return transcript(EXPERIMENT_LABEL, canonicalJson(description));
}

const signedCheckpointSchema = z.strictObject({
  version,
  sha256: sha256HexSchema,
  size: z.int().min(1).max(MAX_PAYLOAD_BYTES),
  /** Coordinator signature over experimentId, version, size, sha256 (crypto/seal.ts signCheckpoint). */
  signature: base64Bytes(SIGNATURE_BYTES),
});

// ---- secure aggregation (shared/secagg; README "Secure aggregation") ----

const secaggAttempt = z.int().min(1).max(1_000_000);
const secaggSiteList = z.array(siteIdSchema).max(MAX_SECAGG_SITES);
/** A share envelope as it travels: nonce ‖ XSalsa20-Poly1305 ciphertext (share-envelope.ts), opaque to the coordinator. */
const envelopeBox = binary(ENVELOPE_BYTES, ENVELOPE_BYTES);
/** One revealed Shamir share of `owner`'s secret: x-coordinate and the 66-byte field element. */
const revealedShareSchema = z.strictObject({ owner: siteIdSchema, x: z.int().min(1).max(MAX_SECAGG_SITES), y: base64Bytes(FIELD_BYTES) });
const distinctIds = (ids: readonly string[]) => new Set(ids).size === ids.length;

function chunkCountMatches(m: { totalBytes: number; chunkBytes: number; chunkCount: number }): boolean {
  return m.chunkCount === Math.ceil(m.totalBytes / m.chunkBytes);
}

// ---- cross-site validation (final-evaluation) ----

/** One metric of one class over a site's test cases: mean over the finite values, cases where it is defined, cases where it is +∞ (HD95 with one mask empty). */
const caseMeanSchema = z.strictObject({ mean: z.number().min(0).max(1e9).nullable(), n: count(1_000_000), infinite: count(1_000_000) });
export const finalEvaluationSchema = z.strictObject({
  experimentId: experimentIdSchema,
  /** The final round and checkpoint of the experiment-complete this answers. */
  round,
  checkpointVersion: version,
  checkpointSha256: sha256HexSchema,
  /** 'global': the final global checkpoint; 'local': the site's own model after its last local training. */
  model: z.enum(['global', 'local']),
  /** Round of the local model's training ('local' only). */
  localRound: round.optional(),
  /** Test cases scored: the only thing said about them. */
  cases: z.int().min(1).max(1_000_000),
  nsdToleranceMm: z.number().gt(0).max(1000),
  classes: z
    .array(z.strictObject({ name: labelNameSchema, dice: caseMeanSchema, hd95: caseMeanSchema, nsd: caseMeanSchema }))
    .min(1)
    .max(MAX_DICE_LABELS),
  signature: base64Bytes(SIGNATURE_BYTES),
});
export type FinalEvaluationMessage = z.output<typeof finalEvaluationSchema>;
export type CaseMean = z.output<typeof caseMeanSchema>;

// ---- messages a site sends ----

const siteSchemas = {
  hello: z.strictObject({
    /** Checked by the handshake (session.ts), which names both versions when they differ. */
    protocolVersion: z.int().min(1).max(1_000_000),
    siteId: siteIdSchema,
    agentVersion: z.string().regex(/^[A-Za-z0-9.+_-]{1,32}$/, 'must be a version string'),
  }),
  auth: z.strictObject({
    sessionId: sessionIdSchema,
    siteId: siteIdSchema,
    siteNonce: base64Bytes(32),
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
  'checkpoint-request': z.strictObject({
    experimentId: experimentIdSchema,
    version,
    index: count(maxChunkCount - 1),
  }),
  'update-begin': z
    .strictObject({
      transferId: transferIdSchema,
      round,
      totalBytes: z.int().min(1).max(MAX_PAYLOAD_BYTES),
      chunkBytes: z.int().min(MIN_CHUNK_BYTES).max(MAX_CHUNK_BYTES),
      chunkCount: z.int().min(1).max(maxChunkCount),
      /** sha256 of the whole plaintext payload, checked at commit. */
      sha256: sha256HexSchema,
      /** What the payload is: PFW weights (absent) or a masked secure-aggregation ring vector (shared/secagg/ring-payload.ts). */
      payload: z.enum(['weights', 'secagg-ring']).optional(),
    })
    .refine(chunkCountMatches, { message: 'chunkCount must equal ceil(totalBytes / chunkBytes)', path: ['chunkCount'] }),
  'update-resume': z.strictObject({ transferId: transferIdSchema }),
  'update-chunk': z.strictObject({
    transferId: transferIdSchema,
    index: count(maxChunkCount - 1),
    nonce: base64Bytes(SEAL_NONCE_BYTES),
    ciphertext: binary(SEAL_OVERHEAD_BYTES + 1, MAX_CIPHERTEXT_BYTES),
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
  'update-commit': z.strictObject({
    transferId: transferIdSchema,
    samples: z.int().min(1).max(1_000_000_000),
    metrics: metricsSchema,
    /** Site signature over payload hash, samples and metrics (see crypto/seal.ts signCommit). */
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
  status: z
    .strictObject({
      round,
      stepsDone: count(10_000_000),
      stepsTotal: count(10_000_000),
      phase: z.enum(['idle', 'downloading', 'training', 'evaluating', 'uploading']).optional(),
      /** Bytes of the current transfer (the checkpoint while 'downloading'); steps stay steps. */
      bytesDone: count(MAX_PAYLOAD_BYTES).optional(),
      bytesTotal: count(MAX_PAYLOAD_BYTES).optional(),
    })
    .refine((s) => s.stepsDone <= s.stepsTotal, { message: 'stepsDone must not exceed stepsTotal', path: ['stepsDone'] })
    .refine((s) => s.bytesDone === undefined || (s.bytesTotal !== undefined && s.bytesDone <= s.bytesTotal), {
      message: 'bytesDone needs bytesTotal and must not exceed it',
      path: ['bytesDone'],
    }),
  error: z.strictObject({ code: errorCodeSchema, message: errorTextSchema }),
  'site-info': siteInfoSchema,
  /**
   * Cross-site validation (site-agent/daemon/final-evaluation.ts): after experiment-complete, the
   * site's scores of the final global model (and, when configured, of its own last local model) on
   * its local test split — per class means over the cases and how many cases, never a case.
   * Signed by the site over its session (site-signed.ts); sent again on every experiment-complete.
   */
  'final-evaluation': finalEvaluationSchema,
  /**
   * The site cannot take part in this round attempt (budget fits nothing, checkpoint refused,
   * training failed): the coordinator records why and stops waiting for it. Signed by the site
   * over its session (site-signed.ts). `reason` says what, never which case or file.
   */
  'round-decline': z.strictObject({
    round,
    attempt: z.int().min(1).max(1_000_000),
    code: errorCodeSchema,
    reason: errorTextSchema,
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
  /**
   * Secure aggregation, step 0: the site's fresh X25519 public keys for this round attempt. The
   * secagg-* requests are signed by the site's enrolled key over experiment, site and content
   * (shared/secagg/wire-signing.ts), like an update commit, and bound to round and attempt.
   */
  'secagg-keys': z.strictObject({
    round,
    attempt: secaggAttempt,
    maskPublicKey: base64Bytes(32),
    sharePublicKey: base64Bytes(32),
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
  /** Step 1: one encrypted share bundle per neighbour, for the coordinator to relay. */
  'secagg-shares': z.strictObject({
    round,
    attempt: secaggAttempt,
    envelopes: z
      .array(z.strictObject({ to: siteIdSchema, box: envelopeBox }))
      .max(MAX_SECAGG_SITES)
      .refine((e) => distinctIds(e.map((x) => x.to)), 'one envelope per recipient'),
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
  /** Step 3: the shares the site's policy allows for the unmasking request (share-policy.ts). */
  'secagg-reveal': z.strictObject({
    round,
    attempt: secaggAttempt,
    selfMaskShares: z.array(revealedShareSchema).max(MAX_SECAGG_SITES),
    keyShares: z.array(revealedShareSchema).max(MAX_SECAGG_SITES),
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
} as const;

// ---- messages the coordinator sends ----

const coordinatorSchemas = {
  challenge: z.strictObject({
    /** Checked by the handshake (session.ts), which names both versions when they differ. */
    protocolVersion: z.int().min(1).max(1_000_000),
    sessionId: sessionIdSchema,
    nonce: base64Bytes(32),
    coordinatorSignPublicKey: base64Bytes(32),
  }),
  'auth-ok': z.strictObject({ sessionId: sessionIdSchema, signature: base64Bytes(SIGNATURE_BYTES) }),
  'auth-fail': z.strictObject({ code: errorCodeSchema, reason: errorTextSchema }),
  /** Signed control message (signed-control.ts): bound to the session it is sent on. */
  'round-task': z.strictObject({
    round,
    /** Attempt of the round (a round that missed its minimum is retried with the same global model). */
    attempt: z.int().min(1).max(1_000_000),
    experimentId: experimentIdSchema,
    checkpoint: signedCheckpointSchema,
    steps: z.int().min(1).max(10_000_000),
    /** Unix time in ms by which the update must be committed. */
    deadline: z.int().min(0).max(8.64e15),
    /** What the strategy's configureFit decided for this site. */
    fit: fitInstructionsSchema,
    /** How to upload: chunk size and chunks in flight, sized so all sites together stay within the coordinator's buffer. */
    upload: z.strictObject({ chunkBytes: z.int().min(MIN_CHUNK_BYTES).max(MAX_CHUNK_BYTES), window: z.int().min(1).max(16) }),
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
  experiment: z.strictObject({ description: experimentDescriptionSchema, signature: base64Bytes(SIGNATURE_BYTES) }),
  /** Signed control message: stop working on a round (attempt) that closed without this site. */
  'round-cancel': z.strictObject({ round, code: errorCodeSchema, reason: errorTextSchema, signature: base64Bytes(SIGNATURE_BYTES) }),
  /** Signed control message: the experiment is over; the final checkpoint. */
  'experiment-complete': z.strictObject({ experimentId: experimentIdSchema, round, checkpoint: signedCheckpointSchema, signature: base64Bytes(SIGNATURE_BYTES) }),
  'checkpoint-chunk': z.strictObject({
    experimentId: experimentIdSchema,
    version,
    index: count(maxChunkCount - 1),
    chunkCount: z.int().min(1).max(maxChunkCount),
    data: binary(1, MAX_CHUNK_BYTES),
  }),
  'transfer-status': z
    .strictObject({ transferId: transferIdSchema, nextIndex: count(maxChunkCount), chunkCount: z.int().min(1).max(maxChunkCount) })
    .refine((s) => s.nextIndex <= s.chunkCount, { message: 'nextIndex must not exceed chunkCount', path: ['nextIndex'] }),
  'chunk-ack': z.strictObject({ transferId: transferIdSchema, index: count(maxChunkCount - 1) }),
  'commit-ok': z.strictObject({ transferId: transferIdSchema, sha256: sha256HexSchema }),
  /** Acknowledges a secagg-keys / secagg-shares / secagg-reveal request. */
  'secagg-ack': z.strictObject({ round, attempt: secaggAttempt, step: z.enum(['keys', 'shares', 'reveal']) }),
  /** Signed control message, secure aggregation step 1: every site that advertised keys (U1), sorted by id. */
  'secagg-roster': z.strictObject({
    round,
    attempt: secaggAttempt,
    roster: z
      .array(z.strictObject({ siteId: siteIdSchema, maskPublicKey: base64Bytes(32), sharePublicKey: base64Bytes(32) }))
      .min(2)
      .max(MAX_SECAGG_SITES)
      .refine((r) => distinctIds(r.map((a) => a.siteId)), 'each site once'),
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
  /** Signed control message, step 1 → 2: the envelopes addressed to this site from the sites that shared (U2). */
  'secagg-envelopes': z.strictObject({
    round,
    attempt: secaggAttempt,
    envelopes: z
      .array(z.strictObject({ from: siteIdSchema, box: envelopeBox }))
      .max(MAX_SECAGG_SITES)
      .refine((e) => distinctIds(e.map((x) => x.from)), 'one envelope per sender'),
    signature: base64Bytes(SIGNATURE_BYTES),
  }),
  /** Signed control message, step 3: which of the site's neighbours dropped (key shares) and survived (self-mask shares). */
  'secagg-unmask': z.strictObject({ round, attempt: secaggAttempt, dropped: secaggSiteList, survivors: secaggSiteList, signature: base64Bytes(SIGNATURE_BYTES) }),
  error: siteSchemas.error,
} as const;

export const MESSAGE_SCHEMAS = { ...siteSchemas, ...coordinatorSchemas } as const;

export type MessageType = keyof typeof MESSAGE_SCHEMAS;
/** Typed form (Uint8Array fields), as returned by parseMessage. */
export type Message<T extends MessageType> = z.output<(typeof MESSAGE_SCHEMAS)[T]>;
/** Wire form (base64 strings, binary attachments), as passed to socket.emit. */
export type WireMessage<T extends MessageType> = z.input<(typeof MESSAGE_SCHEMAS)[T]>;

/**
 * The only message types a site ever sends (events and acknowledgement replies alike).
 * None of them can carry images, labels or per-case data: the privacy test asserts this list.
 */
export const SITE_MESSAGE_TYPES = Object.freeze(Object.keys(siteSchemas)) as readonly (keyof typeof siteSchemas)[];
export const COORDINATOR_MESSAGE_TYPES = Object.freeze(Object.keys(coordinatorSchemas)) as readonly (keyof typeof coordinatorSchemas)[];
export type SiteMessageType = (typeof SITE_MESSAGE_TYPES)[number];
export type CoordinatorMessageType = (typeof COORDINATOR_MESSAGE_TYPES)[number];

/** What the coordinator may acknowledge each site request with. */
export const REPLY_TYPES = {
  hello: ['challenge', 'auth-fail', 'error'],
  auth: ['auth-ok', 'auth-fail', 'error'],
  'checkpoint-request': ['checkpoint-chunk', 'error'],
  'update-begin': ['transfer-status', 'error'],
  'update-resume': ['transfer-status', 'error'],
  'update-chunk': ['chunk-ack', 'error'],
  'update-commit': ['commit-ok', 'error'],
  'secagg-keys': ['secagg-ack', 'error'],
  'secagg-shares': ['secagg-ack', 'error'],
  'secagg-reveal': ['secagg-ack', 'error'],
} as const satisfies Partial<Record<SiteMessageType, readonly CoordinatorMessageType[]>>;
export type RequestType = keyof typeof REPLY_TYPES;
export type ReplyType<R extends RequestType> = (typeof REPLY_TYPES)[R][number];

export function isSiteMessageType(type: unknown): type is SiteMessageType {
  return typeof type === 'string' && (SITE_MESSAGE_TYPES as readonly string[]).includes(type);
}

export function isMessageType(type: unknown): type is MessageType {
  return typeof type === 'string' && Object.prototype.hasOwnProperty.call(MESSAGE_SCHEMAS, type);
}

// ---- hostile-input screening ----

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Walks a received payload before zod sees it: only plain data (plain objects with data
 * properties, arrays, strings, numbers, booleans, null, binary leaves), no prototype-polluting
 * keys, bounded depth, array length and total size. Returns a fresh copy built from what was
 * checked (so a proxy or getter cannot show zod something else), or the reason for refusing.
 */
function screenPayload(payload: unknown): { copy: unknown } | { reason: string } {
  let controlBytes = 0;
  let binaryBytes = 0;
  class Refused {
    constructor(readonly reason: string) {}
  }
  const visit = (v: unknown, depth: number, where: string): unknown => {
    if (depth > MAX_MESSAGE_DEPTH) throw new Refused(`${where}: nested deeper than ${MAX_MESSAGE_DEPTH} levels`);
    switch (typeof v) {
      case 'string':
        controlBytes += v.length * 3; // worst-case UTF-8 bytes
        if (controlBytes > MAX_CONTROL_MESSAGE_BYTES) throw new Refused(`${where}: message text exceeds ${MAX_CONTROL_MESSAGE_BYTES} bytes`);
        return v;
      case 'number':
      case 'boolean':
      case 'undefined':
        controlBytes += 8;
        return v;
      case 'object':
        break;
      default:
        throw new Refused(`${where}: values of type ${typeof v} are not allowed`);
    }
    if (v === null) return v;
    if (v instanceof Uint8Array || v instanceof ArrayBuffer) {
      binaryBytes += v.byteLength;
      if (binaryBytes > MAX_CIPHERTEXT_BYTES) throw new Refused(`${where}: binary data exceeds ${MAX_CIPHERTEXT_BYTES} bytes`);
      return v;
    }
    if (Array.isArray(v)) {
      if (Object.getPrototypeOf(v) !== Array.prototype) throw new Refused(`${where}: not a plain array`);
      const length = v.length;
      if (length > MAX_ARRAY_LENGTH) throw new Refused(`${where}: array longer than ${MAX_ARRAY_LENGTH}`);
      const out: unknown[] = [];
      for (let i = 0; i < length; i++) out.push(visit(v[i], depth + 1, `${where}[${i}]`));
      return out;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) throw new Refused(`${where}: not a plain object`);
    const keys = Reflect.ownKeys(v);
    if (keys.length > MAX_ARRAY_LENGTH) throw new Refused(`${where}: more than ${MAX_ARRAY_LENGTH} keys`);
    const out: Record<string, unknown> = {};
    for (const key of keys) {
      if (typeof key !== 'string') throw new Refused(`${where}: symbol keys are not allowed`);
      if (FORBIDDEN_KEYS.has(key)) throw new Refused(`${where}: key '${key}' is not allowed`);
      controlBytes += key.length * 3;
      if (controlBytes > MAX_CONTROL_MESSAGE_BYTES) throw new Refused(`${where}: message exceeds ${MAX_CONTROL_MESSAGE_BYTES} bytes`);
      const desc = Object.getOwnPropertyDescriptor(v, key);
      if (!desc || !('value' in desc)) throw new Refused(`${where}.${key.slice(0, 64)}: accessor properties are not allowed`);
      out[key] = visit(desc.value, depth + 1, `${where}.${key.slice(0, 64)}`);
    }
    return out;
  };
  try {
    return { copy: visit(payload, 0, 'payload') };
  } catch (e) {
    if (e instanceof Refused) return { reason: e.reason };
    throw e;
  }
}

function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0]!; // zod: a failed parse has at least one issue
  const path = issue.path.map(String).join('.').slice(0, 200);
  return `${path || '(payload)'}: ${issue.message.slice(0, 300)}`;
}

export type ParseResult<T> = { ok: true; data: T } | { ok: false; error: PatchFedError };

/** Like parseMessage, but returns the error instead of throwing it. Never throws. */
export function safeParseMessage<T extends MessageType>(type: T, payload: unknown): ParseResult<Message<T>> {
  try {
    if (!isMessageType(type)) {
      return { ok: false, error: new PatchFedError('unknown-message-type', `Unknown message type '${String(type).slice(0, 64)}'.`, { subject: String(type).slice(0, 64) }) };
    }
    const screened = screenPayload(payload);
    if ('reason' in screened) return { ok: false, error: new PatchFedError('bad-message', `Message '${type}' rejected: ${screened.reason}.`, { subject: type }) };
    const parsed = MESSAGE_SCHEMAS[type].safeParse(screened.copy);
    if (!parsed.success) return { ok: false, error: new PatchFedError('bad-message', `Message '${type}' rejected: ${describeIssue(parsed.error)}.`, { subject: type }) };
    return { ok: true, data: parsed.data as Message<T> };
  } catch (e) {
    // Hostile objects (proxies, exotic getters) can throw from anywhere; never let that escape.
    return { ok: false, error: new PatchFedError('bad-message', `Message '${String(type).slice(0, 64)}' rejected: payload could not be inspected.`, { subject: String(type).slice(0, 64), cause: e }) };
  }
}

/** Validates a received payload; returns typed data or throws PatchFedError (never anything else). */
export function parseMessage<T extends MessageType>(type: T, payload: unknown): Message<T> {
  const r = safeParseMessage(type, payload);
  if (!r.ok) throw r.error;
  return r.data;
}

/** Typed data → wire payload, validating it (so a bug cannot put a malformed message on the wire). */
export function encodeMessage<T extends MessageType>(type: T, data: Message<T>): WireMessage<T> {
  const r = MESSAGE_SCHEMAS[type].safeEncode(data as never);
  if (!r.success) throw new PatchFedError('bad-outgoing-message', `Refusing to send message '${type}': ${describeIssue(r.error)}.`, { subject: type });
  return r.data as WireMessage<T>;
}

// ---- acknowledgement replies: {type, payload} envelopes ----

export interface WireReply {
  type: string;
  payload: unknown;
}

export type Reply<R extends RequestType> = { [K in ReplyType<R>]: { type: K; payload: Message<K> } }[ReplyType<R>];

export function makeReply<T extends CoordinatorMessageType>(type: T, data: Message<T>): WireReply {
  return { type, payload: encodeMessage(type, data) };
}

export function errorReply(error: { code: string; message: string }): WireReply {
  const code = /^[a-z0-9][a-z0-9-]{0,63}$/.test(error.code) ? error.code : 'error';
  return { type: 'error', payload: { code, message: error.message.slice(0, MAX_ERROR_TEXT) } };
}

/** Parses the acknowledgement of `request`; only the reply types allowed for it are accepted. */
export function parseReply<R extends RequestType>(request: R, raw: unknown): Reply<R> {
  try {
    const allowed = REPLY_TYPES[request] as readonly string[];
    if (raw === null || typeof raw !== 'object' || Object.getPrototypeOf(raw) !== Object.prototype) {
      throw new PatchFedError('bad-reply', `Reply to '${request}' is not an object.`, { subject: request });
    }
    const keys = Reflect.ownKeys(raw);
    const typeDesc = Object.getOwnPropertyDescriptor(raw, 'type');
    const payloadDesc = Object.getOwnPropertyDescriptor(raw, 'payload');
    if (keys.length !== 2 || !typeDesc || !payloadDesc || !('value' in typeDesc) || !('value' in payloadDesc)) {
      throw new PatchFedError('bad-reply', `Reply to '${request}' must be exactly {type, payload}.`, { subject: request });
    }
    const type = typeDesc.value as unknown;
    if (typeof type !== 'string' || !allowed.includes(type)) {
      throw new PatchFedError('bad-reply', `Reply to '${request}' has type '${String(type).slice(0, 64)}'; expected one of ${allowed.join(', ')}.`, { subject: request });
    }
    return { type, payload: parseMessage(type as MessageType, payloadDesc.value) } as Reply<R>;
  } catch (e) {
    if (e instanceof PatchFedError) throw e;
    throw new PatchFedError('bad-reply', `Reply to '${request}' could not be inspected.`, { subject: request, cause: e });
  }
}
