/**
 * Deterministic initial values for every weight in a manifest: He-normal kernels
 * (std √(2/fan_in), suited to ReLU), zero biases and β, unit γ, running mean 0 and variance 1
 * (PyTorch's defaults). Each tensor draws from its own stream derived from (seed, name), so
 * adding a layer does not change the others' values.
 */
import { sizeOf, type WeightSpec } from '../weights.ts';
import { deriveSeed, SeededRandom } from '../random.ts';

export function initialValues(spec: WeightSpec, seed: number): Float32Array {
  const n = sizeOf(spec.shape);
  switch (spec.role) {
    case 'conv-kernel':
      return new SeededRandom(deriveSeed(seed, spec.name)).normalArray(n, Math.sqrt(2 / fanIn(spec)));
    case 'norm-gamma':
    case 'norm-running-var':
      return new Float32Array(n).fill(1);
    case 'conv-bias':
    case 'norm-beta':
    case 'norm-running-mean':
      return new Float32Array(n);
  }
}

/**
 * Inputs feeding one output value. Conv kernels are [kd,kh,kw,Cin,Cout] → kd·kh·kw·Cin.
 * The ×2 upsampling kernel is [2,2,2,Cout,Cin] and its output blocks do not overlap, so each
 * output sees exactly Cin inputs.
 */
function fanIn(spec: WeightSpec): number {
  const [kd, kh, kw, a, b] = spec.shape as [number, number, number, number, number];
  return spec.name.endsWith('/up/kernel') ? b : kd * kh * kw * a;
}
