/**
 * Gradient self-check of a compute backend before we train on it.
 *
 * A backend can compute forward passes correctly and still return wrong gradients (stock
 * tfjs-backend-wasm's Conv3D input gradient is wrong), which silently ruins federated training
 * at every site that uses it. So before training we run a tiny network with every kind of layer
 * the U-Net uses — Conv3D stride 1 'same', Conv3D stride 2, max-pool 3D, batch norm, ReLU,
 * learned ×2 upsampling, softmax — and compare its analytic gradients with central finite
 * differences (see gradient-check.ts), for the input and for every filter.
 */
import * as tf from '@tensorflow/tfjs-core';
import './gradients/index.ts';
import { errorMessage } from '../../shared/errors.ts';
import { batchNormTraining } from '../model/ops/batch-norm.ts';
import { learnedUpsample2x } from '../model/ops/upsample.ts';
import { SeededRandom } from '../../shared/random.ts';
import { checkDirectionalDerivatives, maxRelError, type DirectionalCheck } from './gradient-check.ts';

export interface SelfCheckResult {
  passed: boolean;
  /** Largest relative error between analytic and numeric directional derivatives. */
  maxRelError: number;
  /** One line a user can read: what was checked and, on failure, which gradient is off. */
  detail: string;
  checks: DirectionalCheck[];
}

/** Correct kernels stay near 1e-3 in float32; a wrong gradient lands near 1. */
export const SELF_CHECK_TOLERANCE = 1e-2;

/** Sizes chosen so the whole check is ~10 MFLOP (well under a second on the stock cpu backend). */
const SIZES = { spatial: [8, 8, 4] as const, inChannels: 2, hidden: 3, classes: 3 };

/**
 * Runs the check on `backendName` (switching to it and back if it is not the active one).
 * Never throws for a bad backend: an error becomes a failed result with the reason.
 */
export async function gradientSelfCheck(backendName: string): Promise<SelfCheckResult> {
  const previous = tf.getBackend();
  try {
    if (previous !== backendName) {
      const ok = await tf.setBackend(backendName);
      if (!ok) return failed(`backend '${backendName}' could not be initialised`);
    }
    const numTensorsBefore = tf.memory().numTensors;
    const checks = runChecks();
    const leaked = tf.memory().numTensors - numTensorsBefore;
    const worst = maxRelError(checks);
    const bad = checks.filter((c) => !(c.relError <= SELF_CHECK_TOLERANCE));
    if (leaked !== 0) return { passed: false, maxRelError: worst, detail: `backend '${backendName}' leaked ${leaked} tensors during the gradient check`, checks };
    const passed = bad.length === 0;
    const detail = passed
      ? `gradients of conv3d (stride 1 and 2), max-pool 3D, batch norm, ReLU, ×2 upsampling and softmax match finite differences on '${backendName}' (max relative error ${worst.toExponential(1)} ≤ ${SELF_CHECK_TOLERANCE})`
      : `gradients on '${backendName}' disagree with finite differences: ${describeFailures(bad)}`;
    return { passed, maxRelError: worst, detail, checks };
  } catch (e) {
    return failed(`gradient check on '${backendName}' threw: ${errorMessage(e)}`);
  } finally {
    if (previous && tf.getBackend() !== previous) await tf.setBackend(previous);
  }
}

function failed(detail: string): SelfCheckResult {
  return { passed: false, maxRelError: Infinity, detail, checks: [] };
}

function describeFailures(bad: DirectionalCheck[]): string {
  const byInput = new Map<string, number>();
  for (const c of bad) byInput.set(c.input, Math.max(byInput.get(c.input) ?? 0, c.relError));
  return [...byInput].map(([input, err]) => `${gradientLabel(input)} (relative error ${err.toPrecision(2)})`).join(', ');
}

function gradientLabel(input: string): string {
  return input === 'x' ? 'input gradient' : `gradient of ${input}`;
}

function runChecks(): DirectionalCheck[] {
  const rng = new SeededRandom(20240607);
  const { spatial, inChannels: cin, hidden: c, classes } = SIZES;
  const [d, h, w] = spatial;
  const make = (shape: number[], std: number): tf.Tensor => tf.tensor(rng.normalArray(shape.reduce((a, b) => a * b, 1), std), shape);
  const inputs = {
    x: make([1, d, h, w, cin], 1),
    'conv (stride 1) filter': make([3, 3, 3, cin, c], Math.sqrt(2 / (27 * cin))),
    'conv (stride 2) filter': make([3, 3, 3, c, c], Math.sqrt(2 / (27 * c))),
    'upsampling kernel': make([2, 2, 2, classes, c], Math.sqrt(2 / c)),
  };
  const fixed = {
    gamma: make([c], 0.3),
    beta: make([c], 0.3),
    // Fixed weights make the loss a generic smooth function of the softmax output.
    lossWeights: make([1, d / 2, h / 2, w / 2, classes], 1),
  };
  try {
    const loss = ([x, k1, k2, kUp]: tf.Tensor[]): tf.Scalar =>
      tf.tidy(() => {
        const conv1 = tf.conv3d(x as tf.Tensor5D, k1 as tf.Tensor5D, 1, 'same');
        const normed = batchNormTraining(conv1, tf.add(fixed.gamma, 1) as tf.Tensor1D, fixed.beta as tf.Tensor1D).y;
        const act = tf.relu(normed);
        const conv2 = tf.conv3d(act, k2 as tf.Tensor5D, 2, 'same');
        const pooled = tf.maxPool3d(conv2, 2, 2, 'valid');
        const up = learnedUpsample2x(pooled, kUp as tf.Tensor5D);
        return tf.sum(tf.mul(tf.softmax(up), fixed.lossWeights)) as tf.Scalar;
      });
    return checkDirectionalDerivatives(loss, inputs, { seed: 7 });
  } finally {
    tf.dispose([...Object.values(inputs), ...Object.values(fixed)]);
  }
}
