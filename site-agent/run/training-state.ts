/**
 * The resumable state of `patchfed train`, as one file written atomically (temp + fsync +
 * rename): the run's settings (so a resume with other settings is refused), every finished stage
 * (its setup, result and final weights) and the stage in progress (its trainer checkpoint:
 * weights, Adam's moments and step count, losses, validations, best checkpoint).
 *
 *   offset 0   'PFTS'                 magic
 *          4   uint32 LE              format version (1)
 *          8   uint32 LE              header length L (UTF-8 JSON)
 *         12   L bytes                header: settings, stages, and the blob table {name, offset, length, sha256}
 *          …   0–3 zero bytes         padding to a multiple of 4
 *          …   blobs                  each a PFW1 weights payload (shared/codec), offsets relative to here
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { PatchFedError } from '../../shared/errors.ts';
import { decodeWeights, encodeWeights } from '../../shared/codec/weights-codec.ts';
import { STAGES } from '../../shared/model/index.ts';
import type { NamedWeights, WeightSpec } from '../../shared/weights.ts';
import { writeFileAtomic } from '../model/atomic-file.ts';
import type { StageResult, TrainerCheckpoint } from '../train/trainer.ts';
import type { StageSetup } from './site-plan.ts';

const MAGIC = 'PFTS';
export const TRAINING_STATE_VERSION = 1;

/** Settings a resumed run must share with the run that saved the state (compared key by key). */
export type TrainingSettings = Record<string, string | number | boolean | null | readonly (string | number)[]>;

/** A re-planning after a measured step exceeded the budget (train-site.ts StageReplan's shape). */
export type SavedReplan = z.infer<typeof replanSchema>;

export interface CompletedStageState {
  setup: StageSetup;
  replans: SavedReplan[];
  /** With the best checkpoint's weights. */
  result: StageResult;
  /** The stage net's weights when it finished (the best ones when they were restored). */
  weights: NamedWeights;
}

export interface CurrentStageState {
  setup: StageSetup;
  replans: SavedReplan[];
  /** null when the stage was interrupted before its first step. */
  trainer: TrainerCheckpoint | null;
}

export interface SiteTrainingState {
  completed: CompletedStageState[];
  current: CurrentStageState | null;
}

export interface SavedTrainingState {
  settings: TrainingSettings;
  site: SiteTrainingState;
  savedAt: string;
}

// ---- JSON has no NaN: undefined Dice values travel as null ----

const nullable = (x: number) => (Number.isNaN(x) ? null : x);
const numberOrNaN = z.number().nullable().transform((x) => (x === null ? NaN : x));

const validationSchema = z.object({ perClass: z.array(numberOrNaN), meanDice: numberOrNaN });
const validationsSchema = z.array(z.object({ step: z.int().min(1), result: validationSchema }));
const memorySchema = z.object({ engineBytes: z.number(), rssBytes: z.number(), externalBytes: z.number(), wasmHeapBytes: z.number().optional() }).nullable();
const bestSchema = z.object({ step: z.int().min(1), score: z.number(), weights: z.string() }).nullable();
const setupSchema = z.object({
  stage: z.enum(STAGES),
  inChannels: z.int().min(1),
  patch: z.tuple([z.int().min(1), z.int().min(1), z.int().min(1)]),
  batch: z.int().min(1),
  estimatedPeakBytes: z.number(),
});
const shapeBatch = z.object({ patch: z.array(z.int()), batch: z.int() });
const replanSchema = z.object({ from: shapeBatch, to: shapeBatch, measuredEngineBytes: z.number(), budgetBytes: z.number() });
const historySchema = { losses: z.array(z.number()), validations: validationsSchema, best: bestSchema, samples: z.int().min(0), peakMemory: memorySchema };
const headerSchema = z.object({
  format: z.literal('patchfed-training-state'),
  version: z.literal(TRAINING_STATE_VERSION),
  savedAt: z.string(),
  settings: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.union([z.string(), z.number()]))])),
  completed: z.array(
    z.object({ setup: setupSchema, replans: z.array(replanSchema), weights: z.string(), stepsDone: z.int().min(0), timeMs: z.number(), ...historySchema }),
  ),
  current: z
    .object({
      setup: setupSchema,
      replans: z.array(replanSchema),
      trainer: z
        .object({
          step: z.int().min(1),
          weights: z.string(),
          optimizer: z.object({ iterations: z.int().min(0), beta1Power: z.number(), beta2Power: z.number(), firstMoments: z.string(), secondMoments: z.string() }),
          elapsedMs: z.number(),
          ...historySchema,
        })
        .nullable(),
    })
    .nullable(),
  blobs: z.array(z.object({ name: z.string(), offset: z.int().min(0), length: z.int().min(0), sha256: z.string() })),
});

/** Optimizer moments as weights payloads: the trainable tensors' specs under a prefix. */
function momentsAsWeights(prefix: string, trainable: readonly WeightSpec[], values: Float32Array[]): NamedWeights {
  return { manifest: trainable.map((s) => ({ ...s, name: `${prefix}/${s.name}`, shape: [...s.shape] })), values };
}

const validationsJson = (v: StageResult['validations']) => v.map(({ step, result }) => ({ step, result: { perClass: result.perClass.map(nullable), meanDice: nullable(result.meanDice) } }));

export function encodeTrainingState(state: SavedTrainingState): Uint8Array {
  const blobs: { name: string; bytes: Uint8Array }[] = [];
  const blob = (name: string, weights: NamedWeights) => {
    blobs.push({ name, bytes: encodeWeights(weights, `training state ${name}`) });
    return name;
  };
  const best = (b: StageResult['best'], name: string) => (b ? { step: b.step, score: b.score, weights: blob(name, b.weights) } : null);
  const completed = state.site.completed.map((c, i) => ({
    setup: c.setup,
    replans: c.replans,
    weights: blob(`stage${i}/final`, c.weights),
    stepsDone: c.result.stepsDone,
    timeMs: c.result.timeMs,
    losses: c.result.losses,
    validations: validationsJson(c.result.validations),
    best: best(c.result.best, `stage${i}/best`),
    samples: c.result.samples,
    peakMemory: c.result.peakMemory,
  }));
  const cur = state.site.current;
  const t = cur?.trainer ?? null;
  const trainable = t ? t.weights.manifest.filter((s) => s.trainable) : [];
  const current = cur
    ? {
        setup: cur.setup,
        replans: cur.replans,
        trainer: t
          ? {
              step: t.step,
              weights: blob('current/weights', t.weights),
              optimizer: {
                iterations: t.optimizer.iterations,
                beta1Power: t.optimizer.beta1Power,
                beta2Power: t.optimizer.beta2Power,
                firstMoments: blob('current/adam-m', momentsAsWeights('adam-m', trainable, t.optimizer.firstMoments)),
                secondMoments: blob('current/adam-v', momentsAsWeights('adam-v', trainable, t.optimizer.secondMoments)),
              },
              elapsedMs: t.elapsedMs,
              losses: t.losses,
              validations: validationsJson(t.validations),
              best: best(t.best, 'current/best'),
              samples: t.samples,
              peakMemory: t.peakMemory,
            }
          : null,
      }
    : null;
  let offset = 0;
  const table = blobs.map((b) => {
    const entry = { name: b.name, offset, length: b.bytes.length, sha256: createHash('sha256').update(b.bytes).digest('hex') };
    offset += b.bytes.length;
    return entry;
  });
  const header = { format: 'patchfed-training-state', version: TRAINING_STATE_VERSION, savedAt: state.savedAt, settings: state.settings, completed, current, blobs: table };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (4 - ((12 + json.length) % 4)) % 4;
  const out = new Uint8Array(12 + json.length + pad + offset);
  const view = new DataView(out.buffer);
  out.set(Buffer.from(MAGIC, 'ascii'), 0);
  view.setUint32(4, TRAINING_STATE_VERSION, true);
  view.setUint32(8, json.length, true);
  out.set(json, 12);
  let at = 12 + json.length + pad;
  for (const b of blobs) {
    out.set(b.bytes, at);
    at += b.bytes.length;
  }
  return out;
}

export function decodeTrainingState(bytes: Uint8Array, file: string): SavedTrainingState {
  const fail = (why: string): never => {
    throw new PatchFedError('E_RESUME_STATE', `${file}: not a usable training state (${why}); start without --resume to train from scratch`, { subject: file });
  };
  if (bytes.length < 12 || Buffer.from(bytes.subarray(0, 4)).toString('ascii') !== MAGIC) fail('no PFTS header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version !== TRAINING_STATE_VERSION) fail(`format version ${version}, this PatchFed reads ${TRAINING_STATE_VERSION}`);
  const length = view.getUint32(8, true);
  if (12 + length > bytes.length) fail('truncated header');
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes.subarray(12, 12 + length)).toString('utf8'));
  } catch {
    fail('header is not JSON');
  }
  const parsed = headerSchema.safeParse(raw);
  if (!parsed.success) return fail(`header: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
  const h = parsed.data;
  const base = 12 + length + ((4 - ((12 + length) % 4)) % 4);
  const blobs = new Map(h.blobs.map((b) => [b.name, b]));
  const weights = (name: string): NamedWeights => {
    const b = blobs.get(name) ?? fail(`no blob '${name}'`);
    const start = base + b.offset;
    if (start + b.length > bytes.length) fail(`blob '${name}' is truncated`);
    const slice = bytes.subarray(start, start + b.length);
    if (createHash('sha256').update(slice).digest('hex') !== b.sha256) fail(`blob '${name}' fails its checksum`);
    return decodeWeights(slice, { source: `${file} ${name}` });
  };
  const best = (b: { step: number; score: number; weights: string } | null) => (b ? { step: b.step, score: b.score, weights: weights(b.weights) } : null);
  const completed: CompletedStageState[] = h.completed.map((c) => ({
    setup: c.setup,
    replans: c.replans,
    weights: weights(c.weights),
    result: { stepsDone: c.stepsDone, losses: c.losses, validations: c.validations, best: best(c.best), peakMemory: c.peakMemory, samples: c.samples, timeMs: c.timeMs, aborted: false },
  }));
  const cur = h.current;
  const t = cur?.trainer ?? null;
  const current: CurrentStageState | null = cur
    ? {
        setup: cur.setup,
        replans: cur.replans,
        trainer: t
          ? {
              step: t.step,
              weights: weights(t.weights),
              optimizer: {
                iterations: t.optimizer.iterations,
                beta1Power: t.optimizer.beta1Power,
                beta2Power: t.optimizer.beta2Power,
                firstMoments: weights(t.optimizer.firstMoments).values,
                secondMoments: weights(t.optimizer.secondMoments).values,
              },
              losses: t.losses,
              validations: t.validations,
              best: best(t.best),
              samples: t.samples,
              peakMemory: t.peakMemory,
              elapsedMs: t.elapsedMs,
            }
          : null,
      }
    : null;
  return { settings: h.settings, savedAt: h.savedAt, site: { completed, current } };
}

export function writeTrainingState(file: string, state: SavedTrainingState): void {
  writeFileAtomic(file, encodeTrainingState(state));
}

export function readTrainingState(file: string): SavedTrainingState {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PatchFedError(
      'E_RESUME_STATE',
      code === 'ENOENT' ? `no resumable state at ${file}: nothing to resume (a run that finishes removes it; --out must name the interrupted run's folder)` : `${file} cannot be read (${code ?? String(e)})`,
      { subject: file },
    );
  }
  return decodeTrainingState(bytes, file);
}

/** The first setting that differs, as "key: saved → now", or null. */
export function settingsDifference(saved: TrainingSettings, now: TrainingSettings): string | null {
  for (const key of new Set([...Object.keys(saved), ...Object.keys(now)])) {
    const a = JSON.stringify(saved[key] ?? null);
    const b = JSON.stringify(now[key] ?? null);
    if (a !== b) return `${key} was ${a} when the state was saved, now ${b}`;
  }
  return null;
}
