import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { caseToTensors } from '../site-agent/data/tensors.ts';
import type { PreprocessedCase } from '../site-agent/data/preprocess.ts';
import { geometryFor } from './dataset-fixtures.ts';

describe('caseToTensors', () => {
  it('keeps (C, X, Y, Z) or moves channels last, and leaks no tensor', async () => {
    await tf.setBackend('cpu');
    const [C, X, Y, Z] = [2, 3, 2, 2];
    const image = Float32Array.from({ length: C * X * Y * Z }, (_, i) => i);
    const label = Uint8Array.from({ length: X * Y * Z }, (_, i) => i % 3);
    const c: PreprocessedCase = { id: 'x', image, label, shape: [X, Y, Z], channels: C, geometry: geometryFor([X, Y, Z]), normalization: [], labelCounts: new Map() };
    const before = tf.memory().numTensors;

    const first = caseToTensors(c);
    expect(first.image.shape).toEqual([C, X, Y, Z]);
    expect(first.label.shape).toEqual([X, Y, Z]);
    expect(first.label.dtype).toBe('int32');
    expect(Array.from(first.label.dataSync())).toEqual(Array.from(label));
    const last = caseToTensors(c, 'channelsLast');
    expect(last.image.shape).toEqual([X, Y, Z, C]);
    const v = last.image.arraySync() as number[][][][];
    for (let ch = 0; ch < C; ch++)
      for (let x = 0; x < X; x++)
        for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) expect(v[x]![y]![z]![ch]).toBe(image[((ch * X + x) * Y + y) * Z + z]);

    tf.dispose([first.image, first.label, last.image, last.label]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
