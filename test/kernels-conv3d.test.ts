/**
 * The native Conv3D kernels ('cpu-fast') against the stock cpu kernels, on a cheap grid of
 * shapes: kernel 1/2/3, stride 1/2, same/valid padding, odd sizes, 1–64 channels, batch 1–2,
 * forward and both backprops, plus workspace chunking and thread-count independence.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { convThreads, convWorkspaceBytes, setConvThreads, setConvWorkspaceMB } from '../site-agent/kernels/index.ts';
import { compareBackends, fastBackend, runOn, seeded, unavailableReason } from './kernels-fixtures.ts';

const TOL = 1e-4;

type Pad = 'same' | 'valid';
interface Case {
  batch: number;
  spatial: [number, number, number];
  cin: number;
  cout: number;
  k: number | [number, number, number];
  stride: number | [number, number, number];
  pad: Pad;
}

// Odd, unequal sizes; channel pairs cycle through 1..64 so the grid stays cheap for the stock kernels.
const CHANNELS: [number, number][] = [
  [1, 3],
  [4, 8],
  [3, 17],
  [8, 2],
  [16, 16],
  [6, 24],
];
const GRID: Case[] = [];
let n = 0;
for (const k of [1, 2, 3])
  for (const stride of [1, 2])
    for (const pad of ['same', 'valid'] as Pad[]) {
      const [cin, cout] = CHANNELS[n % CHANNELS.length]!;
      GRID.push({ batch: 1 + (n % 2), spatial: n % 2 ? [5, 4, 7] : [3, 6, 5], cin, cout, k, stride, pad });
      n++;
    }
GRID.push({ batch: 1, spatial: [3, 3, 4], cin: 64, cout: 64, k: 3, stride: 1, pad: 'same' });
GRID.push({ batch: 2, spatial: [4, 5, 3], cin: 5, cout: 7, k: [3, 1, 2], stride: [1, 2, 1], pad: 'same' });
// 'same' with stride > kernel: tfjs computes a negative pad.
GRID.push({ batch: 1, spatial: [4, 4, 4], cin: 3, cout: 9, k: 1, stride: 2, pad: 'same' });

const filterShape = (c: Case): [number, number, number, number, number] => {
  const k = typeof c.k === 'number' ? [c.k, c.k, c.k] : c.k;
  return [k[0]!, k[1]!, k[2]!, c.cin, c.cout];
};
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

function caseInputs(c: Case, seed: number) {
  const xShape = [c.batch, ...c.spatial, c.cin];
  const wShape = filterShape(c);
  const yShape = tf.backend_util.computeConv3DInfo(xShape as [number, number, number, number, number], wShape, c.stride, 1, c.pad).outShape;
  return {
    x: { values: seeded(size(xShape), seed), shape: xShape },
    w: { values: seeded(size(wShape), seed + 1, 0.3), shape: wShape },
    dy: { values: seeded(size(yShape), seed + 2), shape: yShape },
  };
}

const label = (c: Case) => `b${c.batch} ${c.spatial.join('x')} ${c.cin}->${c.cout} k${c.k} s${c.stride} ${c.pad}`;

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
