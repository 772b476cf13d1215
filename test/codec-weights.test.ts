import { describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import type { NamedWeights, WeightSpec } from '../shared/weights.ts';
import {
  WeightsDecoder,
  decodeWeights,
  encodeWeights,
  encodedWeightsSize,
  inMemoryValues,
  inspectWeights,
  updateChecks,
} from '../shared/codec/index.ts';

const manifest: WeightSpec[] = [
  { name: 'enc0/conv1/kernel', shape: [3, 3, 3, 1, 4], trainable: true, role: 'conv-kernel' },
  { name: 'enc0/conv1/bias', shape: [4], trainable: true, role: 'conv-bias' },
  { name: 'enc0/norm1/gamma', shape: [4], trainable: true, role: 'norm-gamma' },
  { name: 'enc0/norm1/running_var', shape: [4], trainable: false, role: 'norm-running-var' },
  { name: 'scalar', shape: [], trainable: true, role: 'conv-bias' },
];

function weights(seed = 1): NamedWeights {
  return {
    manifest: manifest.map((s) => ({ ...s, shape: [...s.shape] })),
    values: manifest.map((s, t) => Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(seed * 7 + t * 13 + i) * 0.5)),
  };
}

function rejection(fn: () => unknown): PatchFedError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PatchFedError);
    return e as PatchFedError;
  }
  throw new Error('expected a PatchFedError');
}

/** Builds a payload with an arbitrary manifest JSON, to test what a hostile peer could send. */
function rawPayload(manifestJson: string, valueBytes: number, opts: { magic?: string; version?: number } = {}): Uint8Array {
  const json = new TextEncoder().encode(manifestJson);
  const pad = (4 - (json.length % 4)) % 4;
  const out = new Uint8Array(12 + json.length + pad + valueBytes);
  out.set(new TextEncoder().encode(opts.magic ?? 'PFW1'), 0);
  const view = new DataView(out.buffer);
  view.setUint32(4, opts.version ?? 1, true);
  view.setUint32(8, json.length, true);
  out.set(json, 12);
  return out;
}

describe('weights codec', () => {
  it('round-trips bit-exactly, with a 4-byte-aligned float section and the announced size', () => {
    const w = weights();
    const bytes = encodeWeights(w);
    expect(bytes.length).toBe(encodedWeightsSize(w.manifest));
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('PFW1');
    const manifestLength = new DataView(bytes.buffer).getUint32(8, true);
    const valuesStart = 12 + manifestLength + ((4 - (manifestLength % 4)) % 4);
    expect(valuesStart % 4).toBe(0);
    // Float32 little-endian: the first value of the first tensor sits right at valuesStart.
    expect(new DataView(bytes.buffer).getFloat32(valuesStart, true)).toBe(w.values[0]![0]);
    const back = decodeWeights(bytes);
    expect(back.manifest).toEqual(w.manifest);
    back.values.forEach((v, i) => expect(Buffer.from(v.buffer)).toEqual(Buffer.from(w.values[i]!.buffer)));
  });

  it('decodes the same from chunks of any size, including 1-byte chunks, without aliasing the input', () => {
    const w = weights(2);
    const bytes = encodeWeights(w);
    for (const size of [1, 3, 5, 64, 1000]) {
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
      const back = decodeWeights(chunks);
      back.values.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(w.values[i]!)));
    }
    const back = decodeWeights(bytes);
    bytes.fill(0);
    expect(back.values[0]![0]).toBe(w.values[0]![0]);
  });

  it('refuses NaN and Infinity naming the tensor, both when encoding and when decoding', () => {
    const w = weights();
    w.values[2]![1] = Number.NaN;
    const enc = rejection(() => encodeWeights(w, 'update from hospital-a'));
    expect(enc.code).toBe('weights-not-finite');
    expect(enc.message).toContain("'enc0/norm1/gamma'");
    expect(enc.subject).toBe('enc0/norm1/gamma');
    // Sneak an Infinity into valid bytes, as a hostile or buggy peer could.
    const bytes = encodeWeights(weights());
    const manifestLength = new DataView(bytes.buffer).getUint32(8, true);
    const valuesStart = 12 + manifestLength + ((4 - (manifestLength % 4)) % 4);
    const offsetOfBias = valuesStart + 4 * 108;
    new DataView(bytes.buffer).setFloat32(offsetOfBias + 8, Number.POSITIVE_INFINITY, true);
    const dec = rejection(() => decodeWeights(bytes, { source: 'update from hospital-a' }));
    expect(dec.code).toBe('weights-not-finite');
    expect(dec.message).toContain("tensor 'enc0/conv1/bias'");
    expect(dec.message).toContain('update from hospital-a');
  });

  it('refuses bad magic, version, truncation, trailing bytes and bad padding', () => {
    const bytes = encodeWeights(weights());
    const other = new Uint8Array(bytes);
    other[0] = 'X'.charCodeAt(0);
    expect(rejection(() => decodeWeights(other)).code).toBe('weights-bad-magic');
    const v2 = new Uint8Array(bytes);
    new DataView(v2.buffer).setUint32(4, 2, true);
    expect(rejection(() => decodeWeights(v2)).code).toBe('weights-bad-version');
    const truncated = rejection(() => decodeWeights(bytes.subarray(0, bytes.length - 1)));
    expect(truncated.code).toBe('weights-truncated');
    expect(truncated.message).toContain("'scalar'");
    expect(rejection(() => decodeWeights(bytes.subarray(0, 7))).code).toBe('weights-truncated');
    const longer = new Uint8Array(bytes.length + 4);
    longer.set(bytes);
    expect(rejection(() => decodeWeights(longer)).code).toBe('weights-trailing-bytes');
    const json = '{"tensors":[]}'; // 14 bytes: 2 padding bytes follow
    const padded = rawPayload(json, 0);
    expect(decodeWeights(padded).values).toEqual([]);
    padded[12 + json.length] = 1;
    expect(rejection(() => decodeWeights(padded)).message).toMatch(/padding/);
  });

  it('refuses hostile manifests before allocating: schema, duplicates, oversize shapes, huge manifest length', () => {
    const spec = (over: object) => JSON.stringify({ tensors: [{ name: 'a', shape: [2], trainable: true, role: 'conv-kernel', ...over }] });
    const cases: [string, RegExp][] = [
      [spec({ shape: [-1] }), /shape/],
      [spec({ shape: [1.5] }), /shape/],
      [spec({ role: 'evil' }), /role/],
      [spec({ name: '' }), /name/],
      [spec({ extra: 1 }), /extra|Unrecognized/],
      [spec({ shape: 'x' }), /shape/],
      ['{"tensors": "no"}', /tensors/],
      ['not json', /not valid JSON/],
      [JSON.stringify({ tensors: [{ name: 'a', shape: [1], trainable: true, role: 'conv-bias' }, { name: 'a', shape: [1], trainable: true, role: 'conv-bias' }] }), /appears twice/],
    ];
    for (const [json, pattern] of cases) {
      const err = rejection(() => decodeWeights(rawPayload(json, 8)));
      expect(err.code, json).toBe('weights-bad-manifest');
      expect(err.message, json).toMatch(pattern);
    }
    // 2^31 x 2^31 x 4 floats would be an exabyte: refused from the manifest alone.
    const huge = rejection(() => decodeWeights(rawPayload(spec({ shape: [2 ** 31 - 1, 2 ** 31 - 1, 4] }), 0)));
    expect(huge.code).toBe('weights-too-large');
    const overLimit = rejection(() => decodeWeights(rawPayload(spec({ shape: [1000] }), 4000), { maxBytes: 1000 }));
    expect(overLimit.code).toBe('weights-too-large');
    // A header claiming a 4 GiB manifest is refused from 12 bytes.
    const header = rawPayload('{}', 0);
    new DataView(header.buffer).setUint32(8, 0xffffffff, true);
    const decoder = new WeightsDecoder();
    expect(rejection(() => decoder.push(header.subarray(0, 12))).code).toBe('weights-bad-manifest');
    // After an error the decoder stays failed.
    expect(rejection(() => decoder.push(new Uint8Array(1))).code).toBe('weights-bad-manifest');
  });

  it('checks the manifest against the expected one while decoding', () => {
    const bytes = encodeWeights(weights());
    const expected = manifest.map((s) => ({ ...s }));
    expected[1] = { ...expected[1]!, shape: [8] };
    const err = rejection(() => decodeWeights(bytes, { expectedManifest: expected }));
    expect(err.code).toBe('weights-manifest-mismatch');
    expect(err.message).toContain("'enc0/conv1/bias'");
    expect(decodeWeights(bytes, { expectedManifest: manifest }).values.length).toBe(manifest.length);
  });

  it('refuses inconsistent weights when encoding', () => {
    const w = weights();
    w.values[1] = new Float32Array(3);
    const err = rejection(() => encodeWeights(w));
    expect(err.code).toBe('weights-inconsistent');
    expect(err.message).toContain("'enc0/conv1/bias'");
    expect(rejection(() => encodeWeights({ manifest, values: [] })).code).toBe('weights-inconsistent');
  });
});

describe('the one validation path over decoded weights', () => {
  it('refuses wrong names, shapes, counts, non-finite values and updates over the norm bound', () => {
    const check = (w: NamedWeights, extra: { normBound?: number; reference?: NamedWeights; source?: string } = {}) =>
      inspectWeights(w, updateChecks({ expectedManifest: manifest, source: extra.source ?? 'update', reference: extra.reference ? inMemoryValues(extra.reference) : undefined, normBound: extra.normBound }), extra.source ?? 'update');
    const renamed = weights();
    renamed.manifest[0] = { ...renamed.manifest[0]!, name: 'other' };
    expect(rejection(() => check(renamed)).message).toContain("'enc0/conv1/kernel'");
    const reshaped = weights();
    reshaped.manifest[1] = { ...reshaped.manifest[1]!, shape: [2, 2] };
    expect(rejection(() => check(reshaped)).code).toBe('weights-manifest-mismatch');
    const shorter = weights();
    shorter.manifest.pop();
    shorter.values.pop();
    expect(rejection(() => check(shorter)).message).toMatch(/missing 'scalar'/);
    const wrongLength = weights();
    wrongLength.values[3] = new Float32Array(5);
    expect(rejection(() => check(wrongLength)).message).toContain("'enc0/norm1/running_var'");
    const nan = weights();
    nan.values[4]![0] = Number.NaN;
    const err = rejection(() => check(nan, { source: "update from 'b'" }));
    expect(err.code).toBe('weights-not-finite');
    expect(err.message).toContain("tensor 'scalar'");
    const big = weights();
    big.values[0]!.fill(10);
    const zero = { manifest, values: manifest.map((s) => new Float32Array(s.shape.reduce((a, b) => a * b, 1))) };
    const norm = rejection(() => check(big, { normBound: 5, reference: zero }));
    expect(norm.code).toBe('update-norm-exceeded');
    expect(norm.message).toMatch(/exceeds the bound 5/);
    expect(() => check(weights(), { normBound: 100, reference: zero })).not.toThrow();
  });
});
