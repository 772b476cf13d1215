/**
 * The native Conv3D kernels ('cpu-fast') against the stock cpu kernels, on a cheap grid of
 * shapes: kernel 1/2/3, stride 1/2, same/valid padding, odd sizes, 1–64 channels, batch 1–2,
 * forward and both backprops, plus workspace chunking and thread-count independence.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { convThreads, convWorkspaceBytes, setConvThreads, setConvWorkspaceMB } from '../site-agent/kernels/index.ts';
import { caseInputs, GRID, label, size, type Case } from './kernels-conv-grid.ts';
import { compareBackends, fastBackend, runOn, seeded, unavailableReason } from './kernels-fixtures.ts';

const TOL = 1e-4;

describe.skipIf(fastBackend === null)(`native Conv3D kernels agree with stock cpu ${unavailableReason}`, () => {
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it.each(GRID.map((c, i) => [label(c), c, i] as const))('%s', async (_name, c, i) => {
    const { x, w, dy } = caseInputs(c, 100 + 10 * i);
    const fwd = await compareBackends([x, w], (xt, wt) => tf.conv3d(xt as tf.Tensor5D, wt as tf.Tensor5D, c.stride, c.pad));
    const bFilter = await compareBackends([x, dy], (xt, dyt) =>
      tf.engine().runKernel(tf.Conv3DBackpropFilterV2, { x: xt!, dy: dyt! }, { strides: c.stride, pad: c.pad, filterShape: w.shape } as unknown as tf.NamedAttrMap) as tf.Tensor,
    );
    const bInput = await compareBackends([dy, w], (dyt, wt) =>
      tf.engine().runKernel(tf.Conv3DBackpropInputV2, { dy: dyt!, filter: wt! }, { strides: c.stride, pad: c.pad, inputShape: x.shape } as unknown as tf.NamedAttrMap) as tf.Tensor,
    );
    expect(fwd).toBeLessThanOrEqual(TOL);
    expect(bFilter).toBeLessThanOrEqual(TOL);
    expect(bInput).toBeLessThanOrEqual(TOL);
  });

  it('gradients through tf.grads match stock cpu (conv → relu → conv, stride 2)', async () => {
    const xShape = [2, 5, 6, 4, 3];
    const inputs = [
      { values: seeded(size(xShape), 7), shape: xShape },
      { values: seeded(3 * 3 * 3 * 3 * 8, 8, 0.3), shape: [3, 3, 3, 3, 8] },
      { values: seeded(2 * 2 * 2 * 8 * 4, 9, 0.3), shape: [2, 2, 2, 8, 4] },
    ];
    const err = await compareBackends(inputs, (xt, w1, w2) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
        tf.sum(tf.square(tf.conv3d(tf.relu(tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, 1, 'same')), c as tf.Tensor5D, 2, 'valid'))),
      )([xt!, w1!, w2!]),
    );
    expect(err).toBeLessThanOrEqual(TOL);
  });

  it('gives identical results when the workspace limit forces depth chunking', async () => {
    const c: Case = { batch: 1, spatial: [7, 48, 48], cin: 24, cout: 2, k: 3, stride: 1, pad: 'same' };
    const { x, w, dy } = caseInputs(c, 5);
    const run = () =>
      runOn(fastBackend!, [x, w, dy], (xt, wt, dyt) => [
        tf.conv3d(xt as tf.Tensor5D, wt as tf.Tensor5D, 1, 'same'),
        tf.engine().runKernel(tf.Conv3DBackpropFilterV2, { x: xt!, dy: dyt! }, { strides: 1, pad: 'same', filterShape: w.shape } as unknown as tf.NamedAttrMap) as tf.Tensor,
        tf.engine().runKernel(tf.Conv3DBackpropInputV2, { dy: dyt!, filter: wt! }, { strides: 1, pad: 'same', inputShape: x.shape } as unknown as tf.NamedAttrMap) as tf.Tensor,
      ]);
    const before = convWorkspaceBytes();
    const whole = await run();
    // One padded 48×50×24 float slice is ~230 KB, so 1 MiB holds a few slices: several chunks.
    setConvWorkspaceMB(1);
    try {
      expect(convWorkspaceBytes()).toBe(1024 * 1024);
      const chunked = await run();
      chunked.forEach((out, k) => expect(Array.from(out.values)).toEqual(Array.from(whole[k]!.values)));
    } finally {
      setConvWorkspaceMB(before / (1024 * 1024));
    }
    // And against stock for the forward (cheap with 2 output channels).
    expect(await compareBackends([x, w], (xt, wt) => tf.conv3d(xt as tf.Tensor5D, wt as tf.Tensor5D, 1, 'same'))).toBeLessThanOrEqual(TOL);
  });

  it('gives identical results on 1 thread and on all threads', async () => {
    const c: Case = { batch: 2, spatial: [6, 9, 10], cin: 8, cout: 16, k: 3, stride: 1, pad: 'same' };
    const { x, w } = caseInputs(c, 11);
    const grads = (xt: tf.Tensor, wt: tf.Tensor) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, 1, 'same'))))([xt, wt]);
    const threads = convThreads();
    const many = await runOn(fastBackend!, [x, w], grads);
    setConvThreads(1);
    try {
      const one = await runOn(fastBackend!, [x, w], grads);
      one.forEach((out, k) => expect(Array.from(out.values)).toEqual(Array.from(many[k]!.values)));
    } finally {
      setConvThreads(threads);
    }
  });

  it('refuses bad workspace and thread settings with a PatchFedError', () => {
    expect(() => setConvWorkspaceMB(0)).toThrow(/between 1 and/);
    expect(() => setConvWorkspaceMB(Number.NaN)).toThrow(/between 1 and/);
    expect(() => setConvThreads(0)).toThrow(/integer from 1 to 256/);
    expect(() => setConvThreads(1.5)).toThrow(/integer from 1 to 256/);
  });
});
