/**
 * Streams a model into PFW bytes for a checkpoint while checking it: values must come in
 * manifest order, be finite, and (for an aggregate) the model's L2 norm must not jump beyond a
 * factor of the previous global model's — the last line of defence against a poisoned round: a
 * checkpoint that fails is never written, so it is never signed or distributed.
 */
import { endianness } from 'node:os';
import { PatchFedError } from '../../shared/errors.ts';
import { encodeWeightsHead, firstNonFinite, swapBytes32, type RunVisitor } from '../../shared/codec/index.ts';
import { sizeOf, type WeightSpec } from '../../shared/weights.ts';

const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';

export interface EncodingGuard {
  /** The previous global model's L2 norm and the largest allowed ratio new/previous (0 = no check). */
  previousNorm?: number;
  maxNormGrowth?: number;
}

export class CheckingEncoder {
  private readonly sizes: number[];
  private tensor = 0;
  private offset = 0;
  private sumSquares = 0;
  private scratch: Uint8Array | null = null;

  constructor(
    private readonly manifest: readonly WeightSpec[],
    private readonly put: (bytes: Uint8Array) => void,
    private readonly source: string,
    private readonly guard: EncodingGuard = {},
  ) {
    this.sizes = manifest.map((s) => sizeOf(s.shape));
    put(encodeWeightsHead(manifest, source));
    this.skipEmpty();
  }

  /** L2 norm of everything written so far (all of it after end()). */
  get l2Norm(): number {
    return Math.sqrt(this.sumSquares);
  }

  readonly visit: RunVisitor = (tensor, offset, run) => {
    if (tensor !== this.tensor || offset !== this.offset || offset + run.length > (this.sizes[tensor] ?? 0)) {
      throw new PatchFedError('aggregate-out-of-order', `${this.source}: values for tensor #${tensor} from ${offset} arrived where tensor #${this.tensor} from ${this.offset} was expected.`);
    }
    // One loop for the norm and the finite check: a float32 squared cannot overflow float64, so
    // the sum of squares is non-finite exactly when a value is (NaN or ±Inf).
    const sq = sumOfSquares(run);
    if (sq - sq !== 0) {
      const bad = firstNonFinite(run);
      const name = this.manifest[tensor]?.name ?? `#${tensor}`;
      throw new PatchFedError('aggregate-not-finite', `${this.source}: tensor '${name}' would hold a non-finite value (${run[bad]}) at element ${offset + bad}; the round is not published.`, { subject: name });
    }
    this.sumSquares += sq;
    let bytes = new Uint8Array(run.buffer, run.byteOffset, run.byteLength);
    if (!HOST_IS_LITTLE_ENDIAN) {
      if (!this.scratch || this.scratch.length < bytes.length) this.scratch = new Uint8Array(bytes.length);
      const copy = this.scratch.subarray(0, bytes.length);
      copy.set(bytes);
      swapBytes32(copy);
      bytes = copy;
    }
    this.put(bytes);
    this.offset += run.length;
    this.skipEmpty();
  };

  /** Checks completeness and the norm guard; throws (and so abandons the checkpoint) if either fails. */
  end(): void {
    if (this.tensor < this.sizes.length) {
      throw new PatchFedError('aggregate-incomplete', `${this.source}: the model stopped at tensor '${this.manifest[this.tensor]?.name ?? this.tensor}', element ${this.offset}.`);
    }
    const { previousNorm, maxNormGrowth } = this.guard;
    if (previousNorm !== undefined && previousNorm > 0 && maxNormGrowth !== undefined && maxNormGrowth > 0) {
      const ratio = this.l2Norm / previousNorm;
      if (!(ratio <= maxNormGrowth)) {
        throw new PatchFedError(
          'aggregate-norm-jump',
          `${this.source}: the new global model's L2 norm ${this.l2Norm.toPrecision(6)} is ${ratio.toPrecision(4)}× the previous one (${previousNorm.toPrecision(6)}), over the limit of ${maxNormGrowth}× (experiment.maxGlobalNormGrowth); the round is not published.`,
        );
      }
    }
  }

  private skipEmpty(): void {
    while (this.tensor < this.sizes.length && this.offset === this.sizes[this.tensor]) {
      this.tensor++;
      this.offset = 0;
    }
  }
}

function sumOfSquares(run: Float32Array): number {
  let sq = 0;
  for (let i = 0; i < run.length; i++) {
    const v = run[i] ?? 0;
    sq += v * v;
  }
  return sq;
}
