/**
 * Server optimisers of Reddi et al. 2021, "Adaptive Federated Optimization" (ICLR), Algorithm 2
 * (FedOpt), and server momentum (FedAvgM, Hsu, Qi, Brown 2019, "Measuring the effects of
 * non-identical data distribution for federated visual classification", §3). The round's
 * pseudo-gradient is Δ_t = mean_i(w_i) − x_t (the aggregated model minus the global one):
 *
 *   m_t = β1·m_{t−1} + (1 − β1)·Δ_t                                    (all adaptive variants)
 *   FedAdagrad  v_t = v_{t−1} + Δ_t²
 *   FedAdam     v_t = β2·v_{t−1} + (1 − β2)·Δ_t²
 *   FedYogi     v_t = v_{t−1} − (1 − β2)·Δ_t²·sign(v_{t−1} − Δ_t²)
 *   x_{t+1} = x_t + η_t·m_t / (√v_t + τ)
 * with m_{−1} = 0 and v_{−1} = τ² (Algorithm 2: "v_{−1} ≥ τ²"). FedAvgM keeps a momentum buffer
 *   m_t = β·m_{t−1} + Δ_t,   x_{t+1} = x_t + η·m_t
 * (η = 1, β = 0 is plain FedAvg).
 *
 * Bias correction: Algorithm 2 has none, and that is the default here. `biasCorrection: true`
 * uses Adam's step size η_t = η·√(1 − β2^t)/(1 − β1^t) (Kingma & Ba 2015, §2, the line before
 * §2.1), t = 1, 2, … the server step — what recent Flower FedAdam does.
 *
 * State (step count t, m, v) is plain data: float32 arrays the size of the averaged part of the
 * model, updated in place (O(model) memory, never copied per round) and serialisable exactly
 * (`encodeServerOptimizerState`). Arithmetic per element is float64; m and v are stored in
 * float32, as the model is. Works slice by slice: `beginServerStep`, then `applyServerStep` on
 * each slice (with its offset into the flat parameter vector), then `commitServerStep`.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';

export type AdaptiveKind = 'fedadam' | 'fedyogi' | 'fedadagrad';

export type ServerOptimizerSpec =
  | { kind: 'fedavgm'; learningRate: number; momentum: number }
  | { kind: AdaptiveKind; learningRate: number; beta1: number; beta2: number; tau: number; biasCorrection?: boolean };

export type ServerOptimizerKind = ServerOptimizerSpec['kind'];

export interface ServerOptimizerState {
  kind: ServerOptimizerKind;
  /** Server steps taken so far (t of the last step; 0 before the first). */
  step: number;
  /** First moment (adaptive) or momentum buffer (FedAvgM). */
  m: Float32Array;
  /** Second moment (adaptive); empty for FedAvgM. */
  v: Float32Array;
}

/** The paper's defaults (Reddi et al. 2021, §5 and App. D: β1 = 0.9, β2 = 0.99, τ tuned; 1e-3 is their usual). */
export const ADAPTIVE_DEFAULTS = { beta1: 0.9, beta2: 0.99, tau: 1e-3 } as const;

export function checkServerOptimizerSpec(spec: ServerOptimizerSpec): void {
  const bad = (what: string, v: unknown) => new PatchFedError('server-optimizer', `Server optimiser ${spec.kind}: ${what}, got ${String(v)}.`);
  if (!(Number.isFinite(spec.learningRate) && spec.learningRate > 0)) throw bad('the learning rate must be a positive number', spec.learningRate);
  if (spec.kind === 'fedavgm') {
    if (!(Number.isFinite(spec.momentum) && spec.momentum >= 0 && spec.momentum < 1)) throw bad('momentum must be in [0, 1)', spec.momentum);
    return;
  }
  if (!(spec.beta1 >= 0 && spec.beta1 < 1)) throw bad('β1 must be in [0, 1)', spec.beta1);
  if (!(spec.beta2 >= 0 && spec.beta2 < 1)) throw bad('β2 must be in [0, 1)', spec.beta2);
  if (!(Number.isFinite(spec.tau) && spec.tau > 0)) throw bad('τ must be a positive number', spec.tau);
}

export function createServerOptimizerState(spec: ServerOptimizerSpec, parameterCount: number): ServerOptimizerState {
  checkServerOptimizerSpec(spec);
  if (!(Number.isSafeInteger(parameterCount) && parameterCount >= 0)) {
    throw new PatchFedError('server-optimizer', `Server optimiser: the parameter count must be a non-negative integer, got ${String(parameterCount)}.`);
  }
  if (spec.kind === 'fedavgm') return { kind: spec.kind, step: 0, m: new Float32Array(parameterCount), v: new Float32Array(0) };
  return { kind: spec.kind, step: 0, m: new Float32Array(parameterCount), v: new Float32Array(parameterCount).fill(spec.tau * spec.tau) };
}

export interface ServerStep {
  /** The step being taken (state.step + 1). */
  t: number;
  /** η_t: the learning rate, bias-corrected when asked. */
  eta: number;
}

export function beginServerStep(spec: ServerOptimizerSpec, state: ServerOptimizerState): ServerStep {
  checkServerOptimizerSpec(spec);
  if (state.kind !== spec.kind) throw new PatchFedError('server-optimizer', `Server optimiser: the saved state is for ${state.kind}, the experiment uses ${spec.kind}.`);
  const t = state.step + 1;
  if (spec.kind !== 'fedavgm' && spec.biasCorrection) {
    return { t, eta: (spec.learningRate * Math.sqrt(1 - spec.beta2 ** t)) / (1 - spec.beta1 ** t) };
  }
  return { t, eta: spec.learningRate };
}

/**
 * One slice of the step: `global` and `mean` are the same slice of x_t and of mean_i(w_i), starting
 * at `offset` in the flat parameter vector; `out` receives x_{t+1} (may be `global` itself).
 */
export function applyServerStep(
  spec: ServerOptimizerSpec,
  state: ServerOptimizerState,
  step: ServerStep,
  offset: number,
  global: Float32Array,
  mean: Float32Array,
  out: Float32Array,
): void {
  const n = global.length;
  if (mean.length !== n || out.length !== n) throw new PatchFedError('server-optimizer', 'Server optimiser: global, mean and output slices do not line up.');
  if (!(Number.isSafeInteger(offset) && offset >= 0 && offset + n <= state.m.length)) {
    throw new PatchFedError('server-optimizer', `Server optimiser: slice [${offset}, ${offset + n}) is outside the ${state.m.length} optimised parameters.`);
  }
  const { m, v } = state;
  const eta = step.eta;
  if (spec.kind === 'fedavgm') {
    const beta = spec.momentum;
    for (let j = 0; j < n; j++) {
      const x = global[j]!;
      m[offset + j] = beta * m[offset + j]! + (mean[j]! - x);
      out[j] = x + eta * m[offset + j]!;
    }
    return;
  }
  const { beta1, beta2, tau } = spec;
  for (let j = 0; j < n; j++) {
    const k = offset + j;
    const x = global[j]!;
    const delta = mean[j]! - x;
    const d2 = delta * delta;
    const mj = beta1 * m[k]! + (1 - beta1) * delta;
    const vPrev = v[k]!;
    let vj: number;
    if (spec.kind === 'fedadam') vj = beta2 * vPrev + (1 - beta2) * d2;
    else if (spec.kind === 'fedyogi') vj = vPrev - (1 - beta2) * d2 * Math.sign(vPrev - d2);
    else vj = vPrev + d2;
    m[k] = mj;
    v[k] = vj;
    // m and v as stored (float32), so a restored state continues bit-identically.
    out[j] = x + (eta * m[k]) / (Math.sqrt(v[k]) + tau);
  }
}

export function commitServerStep(state: ServerOptimizerState, step: ServerStep): void {
  if (step.t !== state.step + 1) throw new PatchFedError('server-optimizer', `Server optimiser: step ${step.t} cannot follow step ${state.step}.`);
  state.step = step.t;
}

const MAGIC = 0x5046534f; // "PFSO"
const KINDS: readonly ServerOptimizerKind[] = ['fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'];

/** Exact binary form: magic, kind, step, lengths, then m and v as little-endian float32. */
export function encodeServerOptimizerState(state: ServerOptimizerState): Uint8Array {
  const header = 20;
  const out = new Uint8Array(header + 4 * (state.m.length + state.v.length));
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, KINDS.indexOf(state.kind), true);
  view.setUint32(8, state.step, true);
  view.setUint32(12, state.m.length, true);
  view.setUint32(16, state.v.length, true);
  let p = header;
  for (const arr of [state.m, state.v]) for (const x of arr) {
    view.setFloat32(p, x, true);
    p += 4;
  }
  return out;
}

export function decodeServerOptimizerState(bytes: Uint8Array, what = 'server optimiser state'): ServerOptimizerState {
  const fail = (reason: string) => new PatchFedError('server-optimizer', `${what}: ${reason}.`, { subject: what });
  if (bytes.length < 20) throw fail('too short');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw fail('not a PatchFed server optimiser state');
  const kind = KINDS[view.getUint32(4, true)];
  if (!kind) throw fail('unknown optimiser kind');
  const step = view.getUint32(8, true);
  const mLen = view.getUint32(12, true);
  const vLen = view.getUint32(16, true);
  if (bytes.length !== 20 + 4 * (mLen + vLen)) throw fail(`length ${bytes.length} does not match ${mLen} + ${vLen} values`);
  if (kind === 'fedavgm' ? vLen !== 0 : vLen !== mLen) throw fail('moment lengths do not match the optimiser kind');
  const m = new Float32Array(mLen);
  const v = new Float32Array(vLen);
  let p = 20;
  for (const arr of [m, v]) for (let i = 0; i < arr.length; i++, p += 4) {
    const x = view.getFloat32(p, true);
    if (!Number.isFinite(x)) throw fail('a moment is not finite');
    arr[i] = x;
  }
  return { kind, step, m, v };
}
