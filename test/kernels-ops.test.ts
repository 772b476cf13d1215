/**
 * The other native kernels of 'cpu-fast' (max pooling, broadcast binary ops, unary ops,
 * reductions, slices/splits/concats, transposes, softmax, batched matmul) against stock cpu,
 * including the cases they hand back to the stock kernels (int32 data, non-contiguous axes).
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { convThreads, convWorkspaceBytes, convWorkspaceReservedBytes, setConvThreads, setConvWorkspaceMB } from '../site-agent/kernels/index.ts';
import { loadNativeKernels } from '../site-agent/kernels/native-addon.ts';
import { compareBackends, fastBackend, runOn, seeded, unavailableReason, type Input } from './kernels-fixtures.ts';

const TOL = 1e-5;
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
const input = (shape: number[], seed: number): Input => ({ values: seeded(size(shape), seed), shape });

describe.skipIf(fastBackend === null)(`native kernels agree with stock cpu ${unavailableReason}`, () => {
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('max pooling forward and gradient, including ReLU ties and all-negative windows', async () => {
    // Quantised values after a ReLU: many windows hold several equal maxima (zeros).
    const x = input([2, 5, 4, 6, 3], 1);
    x.values = x.values.map((v) => Math.max(0, Math.round(v * 2) / 2));
    const negative = input([1, 4, 4, 4, 2], 2);
    negative.values = negative.values.map((v) => -Math.abs(v) - 1);
    for (const [t, filter, stride, pad] of [
      [x, 2, 2, 'valid'],
      [x, 3, 2, 'same'],
      [x, 3, 1, 'same'],
      [negative, 2, 2, 'valid'],
    ] as const) {
      const fwd = await compareBackends([t], (a) => tf.maxPool3d(a as tf.Tensor5D, filter, stride, pad));
      // Distinct upstream values per output, so a gradient routed to the wrong window shows.
      const grad = await compareBackends([t], (a) =>
        tf.grad((b: tf.Tensor) => {
          const y = tf.maxPool3d(b as tf.Tensor5D, filter, stride, pad);
          return tf.sum(tf.mul(y, tf.reshape(tf.range(1, 1 + size(y.shape)), y.shape)));
        })(a!),
      );
      expect(fwd, `forward ${filter}/${stride}/${pad}`).toBe(0);
      expect(grad, `gradient ${filter}/${stride}/${pad}`).toBe(0);
    }
  });

  it('broadcasting binary ops in both operand orders', async () => {
    const big = input([1, 6, 5, 4, 8], 3);
    const cases: [number[], number[]][] = [
      [big.shape, big.shape],
      [big.shape, [1, 1, 1, 1, 8]],
      [[1, 1, 1, 1, 8], big.shape],
      [big.shape, [8]],
      [big.shape, []],
      [[], big.shape],
      [[1, 6, 5, 4, 1], [1, 6, 5, 4, 3]],
      [[2, 1, 3], [1, 4, 1]],
      [[3, 1], [2, 1, 5]],
    ];
    for (const [sa, sb] of cases) {
      const a = sa === big.shape ? big : input(sa, 4);
      const b = input(sb, 5);
      b.values = b.values.map((v) => v + Math.sign(v) * 0.5); // keep divisors away from 0
      for (const op of [tf.add, tf.sub, tf.mul, tf.div]) {
        expect(await compareBackends([a, b], (p, q) => op(p!, q!)), `${op.name} [${sa}] [${sb}]`).toBeLessThanOrEqual(TOL);
      }
    }
  });

  it('unary ops keep the stock NaN behaviour', async () => {
    const x = input([3, 7, 5], 6);
    x.values[0] = Number.NaN;
    x.values[1] = 0;
    x.values[2] = -0;
    const nanSafe = (t: tf.Tensor) => tf.where(tf.isNaN(t), tf.fill(t.shape, -7), t);
    for (const op of [tf.relu, tf.step, (t: tf.Tensor) => tf.step(t, 0.25), tf.square, (t: tf.Tensor) => tf.sqrt(tf.abs(t))]) {
      expect(await compareBackends([x], (t) => nanSafe(op(t!)))).toBe(0);
    }
  });

  it('reductions over leading, middle, trailing and non-contiguous axes', async () => {
    const x = input([2, 6, 5, 4, 3], 7);
    for (const axis of [[0, 1, 2, 3], [1, 2, 3], [4], [0], [2, 3], [0, 2], [-1], undefined]) {
      for (const keepDims of [false, true]) {
        expect(await compareBackends([x], (t) => tf.sum(t!, axis, keepDims)), `sum ${axis} ${keepDims}`).toBeLessThanOrEqual(TOL);
        expect(await compareBackends([x], (t) => tf.mean(t!, axis, keepDims)), `mean ${axis} ${keepDims}`).toBeLessThanOrEqual(TOL);
      }
    }
    // int32 sums go to the stock kernel.
    const ints: Input = { values: Int32Array.from({ length: 24 }, (_, i) => i - 5), shape: [2, 3, 4], dtype: 'int32' };
    expect(await compareBackends([ints], (t) => tf.sum(t!, [0, 1]))).toBe(0);
  });

  it('slices, splits, concatenations and transposes', async () => {
    const x = input([2, 5, 4, 3, 6], 8);
    const y = input([2, 5, 4, 3, 2], 9);
    expect(await compareBackends([x], (t) => tf.slice(t!, [0, 1, 0, 1, 2], [2, 3, -1, 2, 3]))).toBe(0);
    expect(await compareBackends([x], (t) => tf.slice(t!, [1, 0, 0, 0, 0], [1, 5, 4, 3, 6]))).toBe(0);
    expect(await compareBackends([x], (t) => tf.split(t!, [1, 3, 2], 4))).toBe(0);
    expect(await compareBackends([x], (t) => tf.split(t!, 5, 1))).toBe(0);
    expect(await compareBackends([x, y], (p, q) => tf.concat([p!, q!, p!], 4))).toBe(0);
    expect(await compareBackends([x, x], (p, q) => tf.concat([p!, q!], 1))).toBe(0);
    for (const perm of [[0, 4, 1, 2, 3], [4, 3, 2, 1, 0], [0, 2, 1, 3, 4], [1, 0, 2, 3, 4]]) {
      expect(await compareBackends([x], (t) => tf.transpose(t!, perm)), `perm ${perm}`).toBe(0);
    }
    const six = input([3, 2, 4, 2, 2, 5], 10);
    expect(await compareBackends([six], (t) => tf.transpose(t!, [0, 3, 1, 4, 2, 5]))).toBe(0);
  });

  it('softmax over the last axis and its gradient', async () => {
    const x = input([2, 4, 3, 5, 3], 11);
    x.values = x.values.map((v) => v * 20); // large logits exercise the max shift
    expect(await compareBackends([x], (t) => tf.softmax(t!))).toBeLessThanOrEqual(TOL);
    expect(await compareBackends([x], (t) => tf.grad((u: tf.Tensor) => tf.sum(tf.mul(tf.softmax(u), tf.range(0, 3))))(t!))).toBeLessThanOrEqual(1e-4);
  });

  it('batched matmul with transposes and broadcast batches', async () => {
    const cases: [number[], number[], boolean, boolean][] = [
      [[37, 19], [19, 41], false, false],
      [[19, 37], [19, 5], true, false],
      [[37, 19], [3, 19], false, true],
      [[19, 7], [41, 19], true, true],
      [[3, 13, 9], [3, 9, 17], false, false],
      [[1, 13, 9], [4, 9, 17], false, false],
      [[2, 2, 6, 4], [1, 4, 6], true, true],
      [[200, 16], [16, 64], false, false],
    ];
    for (const [sa, sb, ta, tb] of cases) {
      const err = await compareBackends([input(sa, 12), input(sb, 13)], (a, b) => tf.matMul(a!, b!, ta, tb));
      expect(err, `[${sa}]${ta ? 'ᵀ' : ''} × [${sb}]${tb ? 'ᵀ' : ''}`).toBeLessThanOrEqual(TOL);
    }
  });

  it('batched matmul with a long K stays inside the workspace limit (blocked K) and agrees with stock cpu', async () => {
    // The upsampling weight gradient's shape: xᵀ · dBlocks with K = voxels. At 1 MiB the packed
    // K rows (40 + 24 + 1 floats each) need 3 blocks; results must not depend on the thread count.
    const cases: [number[], number[], boolean, boolean][] = [
      [[9000, 24], [9000, 40], true, false],
      [[24, 9000], [40, 9000], false, true],
      [[2, 24, 9000], [1, 9000, 40], false, false],
    ];
    const before = convWorkspaceBytes();
    const threads = convThreads();
    setConvWorkspaceMB(1);
    try {
      for (const [sa, sb, ta, tb] of cases) {
        const inputs = [input(sa, 14), input(sb, 15)];
        const product = (a?: tf.Tensor, b?: tf.Tensor) => tf.matMul(a!, b!, ta, tb);
        const err = await compareBackends(inputs, product);
        expect(err, `[${sa}]${ta ? 'ᵀ' : ''} × [${sb}]${tb ? 'ᵀ' : ''}`).toBeLessThanOrEqual(TOL);
        expect(convWorkspaceReservedBytes()).toBeLessThanOrEqual(1024 * 1024);
        const [many] = await runOn(fastBackend!, inputs, product);
        setConvThreads(1);
        const [one] = await runOn(fastBackend!, inputs, product);
        setConvThreads(threads);
        expect(Array.from(one!.values)).toEqual(Array.from(many!.values));
      }
    } finally {
      setConvThreads(threads);
      setConvWorkspaceMB(before / (1024 * 1024));
    }
  });

  it('int32 and bool tensors still work through the stock kernels', async () => {
    const a: Input = { values: Int32Array.from([1, -2, 3, 4, 5, 6]), shape: [2, 3], dtype: 'int32' };
    const [sum] = await runOn(fastBackend!, [a, a], (p, q) => tf.add(p!, q!));
    expect(Array.from(sum!.values)).toEqual([2, -4, 6, 8, 10, 12]);
    const [t] = await runOn(fastBackend!, [a], (p) => tf.transpose(p!));
    expect(Array.from(t!.values)).toEqual([1, 4, -2, 5, 3, 6]);
  });

  it('the addon rejects mismatched sizes instead of reading out of bounds', () => {
    const loaded = loadNativeKernels();
    if (!loaded.ok) throw new Error(loaded.reason);
    const { addon } = loaded;
    const geometry = Int32Array.from([1, 4, 4, 4, 2, 3, 3, 3, 5, 1, 1, 1, 1, 1, 1, 4, 4, 4]);
    expect(() => addon.conv3dForward(geometry, new Float32Array(10), new Float32Array(270), new Float32Array(320))).toThrow(/x has 10 elements, geometry needs 128/);
    expect(() => addon.conv3dForward(geometry.slice(0, 17), new Float32Array(128), new Float32Array(270), new Float32Array(320))).toThrow(/18 fields/);
    const bad = geometry.slice();
    bad[9] = 0; // stride 0
    expect(() => addon.conv3dForward(bad, new Float32Array(128), new Float32Array(270), new Float32Array(320))).toThrow(/positive integer/);
    const x = new Float32Array(128);
    expect(() => addon.conv3dForward(geometry, x, new Float32Array(270), x)).toThrow();
    expect(() => addon.binaryOp(0, new Float32Array(6), Int32Array.from([2, 3]), new Float32Array(4), Int32Array.from([4]), new Float32Array(6))).toThrow(/broadcast/);
    expect(() => addon.sliceCopy(new Float32Array(6), Int32Array.from([2, 3]), Int32Array.from([1, 1]), Int32Array.from([1, 3]), new Float32Array(3))).toThrow(/exceeds/);
    expect(() => addon.transpose(new Float32Array(6), Int32Array.from([2, 3]), Int32Array.from([0, 0]), new Float32Array(6))).toThrow(/permutation/);
    expect(() => addon.batchMatMul(new Float32Array(6), new Float32Array(6), new Float32Array(4), Int32Array.from([1, 1, 1, 2, 2, 4, 0, 0]))).toThrow(/needs 8/);
  });
});
