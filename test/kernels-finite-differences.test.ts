/**
 * Central finite differences for the native Conv3D backprop kernels on the whole shape grid
 * (kernel 1/2/3, stride 1/2, same/valid, odd sizes, 1–64 channels, batch 1–2).
 *
 * The loss L(x, w) = ⟨dy, conv3d(x, w)⟩ is evaluated by a float64 reference convolution, so the
 * numeric derivative (L(x+εv) − L(x−εv)) / 2ε is free of float32 rounding and of tfjs: L is linear
 * in each argument, so the central difference is exact up to float64 rounding and the check can
 * demand the 1e-4 instead of the ~1e-2 a float32 finite difference allows. Each input is
 * checked along a seeded random direction and along the kernel's own gradient (which catches a
 * gradient that is wrong by a consistent factor or permutation).
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { SeededRandom } from '../shared/random.ts';
import { caseInputs, convInfo, GRID, label, referenceConv3d } from './kernels-conv-grid.ts';
import { fastBackend, relError, runOn, unavailableReason } from './kernels-fixtures.ts';

const TOL = 1e-4;
const EPSILON = 1e-2;

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

const unit = (v: ArrayLike<number>): Float64Array => {
  const n = Math.sqrt(dot(v, v));
  return Float64Array.from(v, (e) => e / n);
};
const shifted = (x: ArrayLike<number>, v: ArrayLike<number>, step: number) => Float64Array.from(x, (e, i) => e + step * v[i]!);

/** Relative error of the analytic directional derivative ⟨g, v⟩ against the central difference of `loss`. */
function directionalError(loss: (t: Float64Array) => number, at: ArrayLike<number>, g: ArrayLike<number>, v: Float64Array): number {
  const numeric = (loss(shifted(at, v, EPSILON)) - loss(shifted(at, v, -EPSILON))) / (2 * EPSILON);
  const analytic = dot(g, v);
  const scale = Math.max(Math.abs(analytic), Math.abs(numeric));
  return scale === 0 ? 0 : Math.abs(analytic - numeric) / scale;
}

describe.skipIf(fastBackend === null)(`native Conv3D gradients vs float64 central finite differences ${unavailableReason}`, () => {
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it.each(GRID.map((c, i) => [label(c), c, i] as const))('%s', async (_name, c, i) => {
    const info = convInfo(c);
    const { x, w, dy } = caseInputs(c, 500 + 10 * i);
    const [y, dx, dw] = await runOn(fastBackend!, [x, w, dy], (xt, wt, dyt) => [
      tf.conv3d(xt as tf.Tensor5D, wt as tf.Tensor5D, c.stride, c.pad),
      tf.engine().runKernel(tf.Conv3DBackpropInputV2, { dy: dyt!, filter: wt! }, { strides: c.stride, pad: c.pad, inputShape: x.shape } as unknown as tf.NamedAttrMap) as tf.Tensor,
      tf.engine().runKernel(tf.Conv3DBackpropFilterV2, { x: xt!, dy: dyt! }, { strides: c.stride, pad: c.pad, filterShape: w.shape } as unknown as tf.NamedAttrMap) as tf.Tensor,
    ]);
    // The forward itself against the float64 definition.
    expect(relError(y!.values, referenceConv3d(info, x.values, w.values))).toBeLessThanOrEqual(TOL);

    const lossOfX = (xv: Float64Array) => dot(dy.values, referenceConv3d(info, xv, w.values));
    const lossOfW = (wv: Float64Array) => dot(dy.values, referenceConv3d(info, x.values, wv));
    const rng = new SeededRandom(900 + i);
    const errors = {
      'input, random direction': directionalError(lossOfX, x.values, dx!.values, unit(rng.normalArray(x.values.length))),
      'input, gradient direction': directionalError(lossOfX, x.values, dx!.values, unit(dx!.values)),
      'filter, random direction': directionalError(lossOfW, w.values, dw!.values, unit(rng.normalArray(w.values.length))),
      'filter, gradient direction': directionalError(lossOfW, w.values, dw!.values, unit(dw!.values)),
    };
    for (const [what, err] of Object.entries(errors)) expect(err, what).toBeLessThanOrEqual(TOL);
  });

  it('detects a wrong gradient (the check is not vacuous)', () => {
    const c = GRID.find((g) => g.k === 2 && g.stride === 2 && g.cin === 1)!; // 90 inputs: cheap to differentiate exactly
    const info = convInfo(c);
    const { x, w, dy } = caseInputs(c, 77);
    const lossOfX = (xv: Float64Array) => dot(dy.values, referenceConv3d(info, xv, w.values));
    // L is linear in x, so L(e_k) is exactly ∂L/∂x_k.
    const exact = Float64Array.from(x.values, (_, k) => lossOfX(Float64Array.from(x.values, (__, j) => (j === k ? 1 : 0))));
    const signFlipped = Float64Array.from(exact, (g, k) => (k % 2 === 0 ? g : -g));
    const scaled = Float64Array.from(exact, (g) => 1.01 * g);
    const v = unit(new SeededRandom(3).normalArray(x.values.length));
    expect(directionalError(lossOfX, x.values, exact, v)).toBeLessThanOrEqual(1e-9);
    expect(directionalError(lossOfX, x.values, exact, unit(exact))).toBeLessThanOrEqual(1e-9);
    expect(directionalError(lossOfX, x.values, signFlipped, unit(signFlipped))).toBeGreaterThan(1e-2);
    expect(directionalError(lossOfX, x.values, scaled, unit(scaled))).toBeGreaterThan(TOL);
  });
});
