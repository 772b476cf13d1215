/**
 * A model update as a secure-aggregation vector, and the aggregate back as a model: the part both
 * ends must agree on.
 *
 * The vector holds, in manifest order, every value of every tensor that is averaged — all but
 * the round's local tensors (FedBN's norm tensors, named in the fit instructions: they never leave
 * the site) — as the fixed-point encoding of ω·(w_local − w_global), then ω itself (fixed-point.ts).
 * The coordinator, holding Σ ω_i·Δ_i and Σ ω_i after unmasking, emits g + Σ ω_i·Δ_i / Σ ω_i for the
 * averaged tensors and g for the local ones: FedAvg's sample-weighted mean while every site has at
 * most sampleCap samples, exactly what StreamingWeightedMean computes from plain updates.
 */
import { PatchFedError } from '../errors.ts';
import { checkManifestMatches, type GlobalValues, type WeightRuns } from '../codec/index.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../weights.ts';
import { encodedLength, encodeWeightedUpdate, type EncodedUpdate, type FixedPointParams } from './fixed-point.ts';

export interface MaskedLayout {
  readonly manifest: readonly WeightSpec[];
  /** Offset of each tensor's values in the vector, or −1 for a tensor kept local. */
  readonly offsets: readonly number[];
  /** Update elements d; the vector has d + 1 (the weight last). */
  readonly length: number;
}

/** The vector layout of `manifest` without `localTensors` (each must be a tensor of the manifest). */
export function maskedLayout(manifest: readonly WeightSpec[], localTensors: readonly string[]): MaskedLayout {
  const local = new Set(localTensors);
  for (const name of local) {
    if (!manifest.some((s) => s.name === name)) throw new PatchFedError('secagg-layout', `Secure aggregation: local tensor '${name}' is not part of the model.`, { subject: name });
  }
  const offsets: number[] = [];
  let length = 0;
  for (const spec of manifest) {
    if (local.has(spec.name)) offsets.push(-1);
    else {
      offsets.push(length);
      length += sizeOf(spec.shape);
    }
  }
  if (length === 0) throw new PatchFedError('secagg-layout', 'Secure aggregation: every tensor is local; there is nothing to aggregate.');
  return { manifest, offsets, length };
}

/** Elements of the round's vectors (d + 1). */
export function vectorLength(layout: MaskedLayout): number {
  return encodedLength(layout.length);
}

/**
 * Site side: ω·(update − global) over the averaged tensors, clamped and rounded into the ring, ω
 * appended. The float32 delta is written into the result's own bytes first and encoded in place,
 * so the only memory is the d + 1 element result. (DP clipping and noise, when configured, were
 * applied to `update` before: the site's DP hook runs before masking.)
 */
export function encodeModelUpdate(update: NamedWeights, global: NamedWeights, layout: MaskedLayout, params: FixedPointParams, weight: number): EncodedUpdate {
  checkManifestMatches(layout.manifest, update.manifest, 'the update to mask');
  checkManifestMatches(layout.manifest, global.manifest, 'the global model of the round');
  const vector = new Uint32Array(vectorLength(layout));
  const delta = new Float32Array(vector.buffer, vector.byteOffset, layout.length);
  layout.offsets.forEach((base, t) => {
    if (base < 0) return;
    const u = update.values[t];
    const g = global.values[t];
    if (!u || !g || u.length !== g.length) throw new PatchFedError('secagg-layout', `Secure aggregation: tensor '${layout.manifest[t]?.name ?? t}' has the wrong number of values.`);
    for (let j = 0; j < u.length; j++) delta[base + j] = (u[j] ?? 0) - (g[j] ?? 0);
  });
  return encodeWeightedUpdate(delta, params, { weight, into: vector });
}

/** Values per run handed to the consumer of decoded runs. */
const OUTPUT_BLOCK = 256 * 1024;

export interface DecodedModel {
  /** The new global model's values, tensor by tensor in blocks (g + mean Δ; local tensors: g). */
  runs: WeightRuns;
  /** Σ ω_i as decoded from the sum's last element. */
  totalWeight: number;
}

/**
 * How the unmasked sum becomes a model: 'weighted-mean' g + Σω_iΔ_i / Σω_i (FedAvg, FedProx,
 * FedBN); 'sum' g + Σ Δ_i, undivided, for distributed DP, whose aggregator divides by its own
 * fixed denominator (coordinator/strategies/dp-sum.ts).
 */
export type DecodeMode = 'weighted-mean' | 'sum';

/**
 * Coordinator side: the unmasked sum as the new global model, streamed from the sum and the
 * round's global (read a block at a time) — nothing is materialised beyond one output block.
 * The sum must stay alive until the runs have been consumed.
 */
export function decodeModelRuns(sum: Uint32Array, layout: MaskedLayout, global: GlobalValues, params: FixedPointParams, mode: DecodeMode = 'weighted-mean'): DecodedModel {
  if (sum.length !== vectorLength(layout)) {
    throw new PatchFedError('secagg-length', `Secure aggregation: the unmasked sum has ${sum.length} elements, ${vectorLength(layout)} expected.`);
  }
  checkManifestMatches(layout.manifest, global.manifest, 'the global model of the round');
  const totalWeight = ((sum[layout.length] ?? 0) | 0) / params.scale;
  if (!(totalWeight > 0)) {
    throw new PatchFedError('secagg-decode', `Secure aggregation: the round's total sample weight decodes to ${totalWeight}; nothing to average.`);
  }
  // 'sum' (distributed DP): g + Σ Δ'_i, which the DP aggregator turns into g + Σ Δ'_i / m.
  const factor = mode === 'sum' ? 1 / params.scale : 1 / (params.scale * totalWeight);
  const block = new Float32Array(OUTPUT_BLOCK);
  const runs: WeightRuns = {
    manifest: layout.manifest,
    forEachRun: async (visit) => {
      layout.manifest.forEach((spec, t) => {
        const size = sizeOf(spec.shape);
        const base = layout.offsets[t] ?? -1;
        for (let offset = 0; offset < size; offset += OUTPUT_BLOCK) {
          const n = Math.min(OUTPUT_BLOCK, size - offset);
          const g = global.read(t, offset, n);
          const out = block.subarray(0, n);
          if (base < 0) out.set(g);
          else for (let j = 0; j < n; j++) out[j] = (g[j] ?? 0) + ((sum[base + offset + j] ?? 0) | 0) * factor;
          visit(t, offset, out);
        }
      });
    },
  };
  return { runs, totalWeight };
}
