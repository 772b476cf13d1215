/**
 * Convolution workspace of the native kernels (site-agent/kernels/native, backend 'cpu-fast'),
 * memory the tfjs engine never sees. The kernels keep ONE arena, grown to the largest request
 * and kept between calls; each 3×3×3 convolution (forward, backprop-input, backprop-filter)
 * requests its packed filter panels, a zero row, and zero-padded copies of as many source depth
 * slices as fit the limit (at least one slice); each matMul (the learned upsampling, forward and
 * both gradients) its packed B panels for a block of the reduction dimension, plus a transposed
 * copy of A when A is transposed. This mirrors run_igemm / conv3d_backprop_filter in
 * src/conv3d.cc and batch_matmul in src/matmul.cc, so the planner can predict the arena instead
 * of charging the whole limit.
 */
import { activeBackend } from '../backend/active.ts';
import { loadNativeKernels } from '../kernels/native-addon.ts';
import { PatchFedError } from '../../shared/errors.ts';
import type { UNetShape } from './estimate.ts';

const FLOAT = 4;
/** Slack floats the kernels add after the padded slices (src/conv3d.cc). */
const SLACK = 64;

/**
 * The workspace limit that applies to training in this process: the native kernels' limit
 * (default 64 MiB, or PATCHFED_CONV_WORKSPACE_MB) when their addon is built and enabled — training
 * then defaults to 'cpu-fast' — else 0. Loads only the addon, not tfjs, so `patchfed plan` stays fast.
 * 0 as well once selectBackend chose 'tensorflow': TensorFlow's kernels never touch the arena
 * (their scratch memory is inside the engine estimate's slack; see README.md).
 * (Explicitly training on the stock 'cpu' backend needs no workspace; the estimate is then conservative.)
 */
export function kernelWorkspaceBytes(): number {
  if (activeBackend()?.name === 'tensorflow') return 0;
  const loaded = loadNativeKernels();
  return loaded.ok ? loaded.addon.workspaceLimit() : 0;
}

const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;

/** Floats of the packed filter panels for `tC` destination channels (plan_panels / panels_floats). */
function packedFloats(tC: number, kc: number): number {
  const groups = 9; // fD · fH taps of a 3×3×3 filter
  const mr12 = tC <= 8;
  let total = 0;
  for (let col0 = 0; col0 < tC; ) {
    const left = tC - col0;
    const nv = mr12 || left <= 8 ? 1 : 2;
    total += groups * kc * nv * 8;
    col0 += Math.min(left, nv * 8);
  }
  return total;
}

/** Arena floats of one indirect-GEMM call (forward or backprop-input). */
function igemmFloats(depth: number, sliceFloats: number, tC: number, kc: number, limitFloats: number): number {
  const packed = packedFloats(tC, kc);
  const zero = roundUp(kc + 16, 16);
  const budget = limitFloats - packed - zero - SLACK;
  const slices = Math.max(1, Math.min(depth, Math.floor(budget / Math.max(1, sliceFloats))));
  return packed + zero + slices * sliceFloats + SLACK;
}

/** Arena floats of a backprop-filter call. */
function filterGradFloats(depth: number, sliceFloats: number, limitFloats: number): number {
  const slices = Math.max(1, Math.min(depth, Math.floor((limitFloats - SLACK) / Math.max(1, sliceFloats))));
  return slices * sliceFloats + SLACK;
}

/** Packed floats per reduction row for N output columns (plan_panels(N, 1, 1)). */
function packedPerK(n: number): number {
  const mr12 = n <= 8;
  let total = 0;
  for (let col0 = 0; col0 < n; ) {
    const left = n - col0;
    const nv = mr12 || left <= 8 ? 1 : 2;
    total += nv * 8;
    col0 += Math.min(left, nv * 8);
  }
  return total;
}

/** Arena floats of one batch_matmul call (C[M×N] = op(A)[M×K] · op(B)[K×N]). */
function matMulFloats(m: number, n: number, k: number, transposeA: boolean, limitFloats: number): number {
  const perK = packedPerK(n) + (transposeA ? m : 0) + 1;
  const kb = Math.min(k, Math.max(64, Math.floor((limitFloats - 16) / perK)));
  return kb * packedPerK(n) + (transposeA ? m * kb : 0) + kb + 16;
}

/** Voxels of an [X, Y, Z] patch; a patch with fewer than three sizes is refused, not counted as NaN. */
export function patchVoxels(patch: readonly number[]): number {
  const [x, y, z] = patch;
  if (x === undefined || y === undefined || z === undefined) {
    throw new PatchFedError('planner-patch', `patch [${patch.join(', ')}] needs three sizes (X, Y, Z)`);
  }
  return x * y * z;
}

/**
 * Bytes of the arena after a training step (or a forward pass) of this U-Net on this patch,
 * with the given limit; 0 when the limit is 0 (no native kernels). Convolutions process one
 * sample at a time; the upsampling matMuls see the whole batch. The 1×1×1 head convolution
 * reads its input in place.
 */
export function convWorkspaceEstimate(net: UNetShape, patch: readonly number[], limitBytes: number, pass: 'training' | 'inference', batch = 1): number {
  if (!(limitBytes > 0)) return 0;
  const limit = Math.floor(limitBytes / FLOAT);
  const { base, depth } = net.arch;
  let floats = 0;
  const conv = (level: number, cin: number, cout: number) => {
    const [d, h, w] = patch.map((p) => p / 2 ** level) as [number, number, number];
    const row = w + 2; // 'same' padding: one zero column each side along W
    floats = Math.max(floats, igemmFloats(d, h * row * cin, cout, 3 * cin, limit));
    if (pass === 'training') {
      floats = Math.max(floats, igemmFloats(d, h * row * cout, cin, 3 * cout, limit));
      floats = Math.max(floats, filterGradFloats(d, h * row * cin, limit));
    }
  };
  let cin = net.inChannels;
  for (let i = 0; i < depth; i++) {
    const c = base * 2 ** i;
    conv(i, cin, c);
    conv(i, c, c);
    if (i < depth - 1) {
      conv(i, 2 * c, c);
      conv(i, c, c);
      // Upsampling from level i+1: [B·voxels(i+1), 2c] · [2c, 8c] (ops/upsample.ts).
      const rows = (batch * patchVoxels(patch)) / 8 ** (i + 1);
      floats = Math.max(floats, matMulFloats(rows, 8 * c, 2 * c, false, limit));
      if (pass === 'training') {
        floats = Math.max(floats, matMulFloats(rows, 2 * c, 8 * c, false, limit)); // dA = dy · Wᵀ
        floats = Math.max(floats, matMulFloats(2 * c, 8 * c, rows, true, limit)); // dW = Aᵀ · dy
      }
    }
    cin = c;
  }
  // aligned_alloc rounds the arena to 64 bytes.
  return roundUp(floats * FLOAT, 64);
}
