/**
 * Running an exported ONNX stage with onnxruntime-node (an optional dependency, imported lazily:
 * PatchFed works without it, and says how to get it when a command needs it), as a PatchPredictor
 * for the same sliding-window code the tfjs models use. Windows arrive channels-last (NDHWC, the
 * pipeline's layout) and are transposed to ONNX's NCDHW and back.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { PatchBatch, PatchPredictor } from '../pipeline/sliding-window.ts';
import { ONNX_INPUT, ONNX_OUTPUT } from './onnx-graph.ts';

/** The part of onnxruntime's API used here (typed locally: the package is optional). */
interface OrtTensor {
  readonly data: unknown;
  readonly dims: readonly number[];
}
interface OrtSession {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor | undefined>>;
  release(): Promise<void>;
}
interface OrtModule {
  InferenceSession: { create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
  env?: { versions?: { common?: string } };
}

const PACKAGE = 'onnxruntime-node';
let loaded: Promise<OrtModule> | undefined;

function isOrtModule(m: unknown): m is OrtModule {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as Record<string, unknown>;
  const session = r.InferenceSession as Record<string, unknown> | undefined;
  return typeof session?.create === 'function' && typeof r.Tensor === 'function';
}

/** onnxruntime-node, or a PatchFedError saying it is missing and how to install it. */
export function loadOnnxRuntime(): Promise<OrtModule> {
  loaded ??= (async () => {
    let mod: unknown;
    try {
      // A variable specifier: the package is optional, so neither tsc nor the bundle may require it.
      const name: string = PACKAGE;
      mod = await import(name);
    } catch (e) {
      throw new PatchFedError(
        'E_ONNXRUNTIME',
        `${PACKAGE} is not installed (an optional dependency of PatchFed; its CPU binaries ship in the npm package): install it with 'npm install ${PACKAGE}' to run or verify ONNX models (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`,
      );
    }
    const candidate = isOrtModule(mod) ? mod : (mod as { default?: unknown }).default;
    if (!isOrtModule(candidate)) throw new PatchFedError('E_ONNXRUNTIME', `${PACKAGE} did not load as expected (no InferenceSession.create)`);
    return candidate;
  })();
  loaded.catch(() => (loaded = undefined));
  return loaded;
}

export function onnxRuntimeVersion(ort: OrtModule): string {
  return ort.env?.versions?.common ?? 'unknown';
}

/** (n, X, Y, Z, C) channels-last → (n, C, X, Y, Z). */
export function toChannelsFirst(data: Float32Array, n: number, voxels: number, channels: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let b = 0; b < n; b++) {
    const base = b * voxels * channels;
    for (let v = 0; v < voxels; v++) for (let c = 0; c < channels; c++) out[base + c * voxels + v] = data[base + v * channels + c] ?? 0;
  }
  return out;
}

/** (n, C, X, Y, Z) → (n, X, Y, Z, C) channels-last. */
export function toChannelsLast(data: Float32Array, n: number, voxels: number, channels: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let b = 0; b < n; b++) {
    const base = b * voxels * channels;
    for (let c = 0; c < channels; c++) for (let v = 0; v < voxels; v++) out[base + v * channels + c] = data[base + c * voxels + v] ?? 0;
  }
  return out;
}

export interface OnnxStage {
  /** Channels-last windows in, channels-last probabilities out (the pipeline's PatchPredictor). */
  predictor: PatchPredictor;
  /** Runs the raw graph: NCDHW in, NCDHW probabilities out. */
  run(data: Float32Array, dims: readonly number[]): Promise<Float32Array>;
  release(): Promise<void>;
}

/** An onnxruntime session for one exported stage. `threads`: intra-op threads (default: onnxruntime's). */
export async function onnxStage(model: Uint8Array, numClasses: number, opts: { threads?: number } = {}): Promise<OnnxStage> {
  const ort = await loadOnnxRuntime();
  const session = await ort.InferenceSession.create(model, opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {});
  const run = async (data: Float32Array, dims: readonly number[]): Promise<Float32Array> => {
    const out = (await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', data, dims) }))[ONNX_OUTPUT];
    if (!out || !(out.data instanceof Float32Array)) throw new PatchFedError('E_ONNXRUNTIME', `onnxruntime returned no float32 '${ONNX_OUTPUT}'`);
    return out.data;
  };
  const predictor: PatchPredictor = async (batch: PatchBatch) => {
    const [n, x, y, z, c] = batch.shape;
    const voxels = x * y * z;
    const probs = await run(toChannelsFirst(batch.data, n, voxels, c), [n, c, x, y, z]);
    return toChannelsLast(probs, n, voxels, numClasses);
  };
  return { predictor, run, release: () => session.release() };
}
