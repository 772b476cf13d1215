/**
 * Loads the native Conv3D addon built by site-agent/kernels/native/build.mjs. Missing or broken
 * builds are an expected state (no compiler at install time): the loader reports why instead of
 * throwing, and callers fall back to the stock cpu kernels.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../../shared/errors.ts';

/** The addon's functions (src/addon.cc). Outputs are caller-allocated and fully overwritten. */
export interface NativeConvAddon {
  conv3dForward(geometry: Int32Array, x: Float32Array, filter: Float32Array, y: Float32Array): void;
  conv3dBackpropInput(geometry: Int32Array, dy: Float32Array, filter: Float32Array, dx: Float32Array): void;
  conv3dBackpropFilter(geometry: Int32Array, x: Float32Array, dy: Float32Array, dFilter: Float32Array): void;
  maxPool3d(geometry: Int32Array, x: Float32Array, y: Float32Array): void;
  maxPool3dGrad(geometry: Int32Array, dy: Float32Array, x: Float32Array, dx: Float32Array): void;
  /** op: 0 add, 1 sub, 2 mul, 3 div, with broadcasting. */
  binaryOp(op: number, a: Float32Array, aShape: Int32Array, b: Float32Array, bShape: Int32Array, out: Float32Array): void;
  /** op: 0 relu, 1 step (alpha), 2 square, 3 sqrt. */
  unaryOp(op: number, x: Float32Array, alpha: number, out: Float32Array): void;
  /** dims: [batch, batchA, batchB, M, N, K, transposeA, transposeB]. */
  batchMatMul(a: Float32Array, b: Float32Array, c: Float32Array, dims: Int32Array): void;
  /** out[o][i] = scale · Σ_r x[o][r][i]. */
  reduceSum(x: Float32Array, outer: number, reduce: number, inner: number, scale: number, out: Float32Array): void;
  sliceCopy(x: Float32Array, shape: Int32Array, begin: Int32Array, size: Int32Array, out: Float32Array): void;
  concatRows(parts: Float32Array[], widths: Int32Array, outer: number, out: Float32Array): void;
  splitRows(x: Float32Array, widths: Int32Array, outer: number, parts: Float32Array[]): void;
  transpose(x: Float32Array, shape: Int32Array, perm: Int32Array, out: Float32Array): void;
  softmaxRows(x: Float32Array, rows: number, cols: number, out: Float32Array): void;
  setWorkspaceLimit(bytes: number): void;
  workspaceLimit(): number;
  workspaceReserved(): number;
  releaseWorkspace(): void;
  setThreads(threads: number): void;
  threads(): number;
}

export type NativeLoadResult = { ok: true; addon: NativeConvAddon; path: string } | { ok: false; reason: string };

export const NATIVE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'native');
export const NATIVE_ADDON_PATH = join(NATIVE_DIR, 'build', 'Release', 'patchfed_conv3d.node');

const REQUIRED_FUNCTIONS: (keyof NativeConvAddon)[] = [
  'conv3dForward',
  'conv3dBackpropInput',
  'conv3dBackpropFilter',
  'maxPool3d',
  'maxPool3dGrad',
  'binaryOp',
  'unaryOp',
  'batchMatMul',
  'reduceSum',
  'sliceCopy',
  'concatRows',
  'splitRows',
  'transpose',
  'softmaxRows',
  'setWorkspaceLimit',
  'workspaceLimit',
  'workspaceReserved',
  'releaseWorkspace',
  'setThreads',
  'threads',
];

let cached: NativeLoadResult | undefined;

/** Loads the addon once per process. PATCHFED_NATIVE_KERNELS=0 disables it (for A/B runs). */
export function loadNativeKernels(): NativeLoadResult {
  if (cached) return cached;
  cached = loadNativeAddonFrom(NATIVE_ADDON_PATH);
  return cached;
}

/** Uncached load of the addon at `addonPath` (tests point it at missing, broken or stale builds). */
export function loadNativeAddonFrom(addonPath: string, env: NodeJS.ProcessEnv = process.env): NativeLoadResult {
  if (env.PATCHFED_NATIVE_KERNELS === '0') return { ok: false, reason: 'disabled by PATCHFED_NATIVE_KERNELS=0' };
  if (!existsSync(addonPath)) {
    return { ok: false, reason: `not built (no ${addonPath}; run 'node site-agent/kernels/native/build.mjs')` };
  }
  let mod: Partial<NativeConvAddon>;
  try {
    mod = createRequire(import.meta.url)(addonPath) as Partial<NativeConvAddon>;
  } catch (e) {
    return { ok: false, reason: `failed to load ${addonPath}: ${errorMessage(e).split('\n')[0]}` };
  }
  const missing = REQUIRED_FUNCTIONS.filter((name) => typeof mod[name] !== 'function');
  if (missing.length > 0) {
    return { ok: false, reason: `${addonPath} is stale (missing ${missing.join(', ')}); rebuild it` };
  }
  return { ok: true, addon: mod as NativeConvAddon, path: addonPath };
}
