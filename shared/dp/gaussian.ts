/**
 * Gaussian noise for differential privacy: Box–Muller (Box & Muller 1958) over 53-bit uniforms
 * taken from an AES-256-CTR keystream. Seeded with 32 random bytes it is a cryptographically
 * strong sampler (`secureGaussian`); seeded with a fixed value it is reproducible for tests
 * (`seededGaussian`) — one implementation for both, so tests exercise the production code.
 *
 * As in TensorFlow Privacy and Opacus, samples are float64 approximations of the Gaussian; the
 * accounted guarantee is that of the ideal mechanism (floating-point sampling artefacts,
 * Mironov 2012, are not modelled).
 */
import { createCipheriv, createHash, randomBytes, type Cipher } from 'node:crypto';
import { PatchFedError } from '../errors.ts';

const BUFFER_BYTES = 1 << 16;
const ZEROS = new Uint8Array(BUFFER_BYTES);
const TWO_POW_26 = 2 ** 26;
const TWO_POW_53 = 2 ** 53;

/** A source of standard normal draws (the shape fixed-point.ts's encoder takes). */
export interface GaussianSampler {
  normal(): number;
}

class KeystreamGaussian implements GaussianSampler {
  private readonly cipher: Cipher;
  private view: DataView = new DataView(new ArrayBuffer(0));
  private pos = 0;
  private spare: number | null = null;

  constructor(seed: Uint8Array) {
    if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new PatchFedError('dp-seed', 'DP noise: a sampler seed must be 32 bytes.');
    this.cipher = createCipheriv('aes-256-ctr', seed, new Uint8Array(16));
  }

  private word(): number {
    if (this.pos + 4 > this.view.byteLength) {
      const bytes = this.cipher.update(ZEROS);
      this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      this.pos = 0;
    }
    const w = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return w;
  }

  /** Uniform in (0, 1): 53 random bits, centred in their interval so 0 never occurs. */
  private uniform(): number {
    const k = (this.word() >>> 5) * TWO_POW_26 + (this.word() >>> 6);
    return (k + 0.5) / TWO_POW_53;
  }

  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const theta = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }
}

/** A cryptographically seeded sampler: what sites and the coordinator use for real noise. */
export function secureGaussian(): GaussianSampler {
  return new KeystreamGaussian(new Uint8Array(randomBytes(32)));
}

/** A reproducible sampler for tests and simulations: same seed, same draws, on every machine. */
export function seededGaussian(seed: number | string | Uint8Array): GaussianSampler {
  const bytes = seed instanceof Uint8Array ? seed : new Uint8Array(createHash('sha256').update(`patchfed-dp-gaussian:${String(seed)}`).digest());
  return new KeystreamGaussian(bytes);
}
