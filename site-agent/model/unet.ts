/**
 * The 3D U-Net of thesis §2.2.1, on tfjs-core only (no tfjs-layers: it refuses rank-5 batch
 * norm). Stages of two 3×3×3 convolutions ('same' padding), each followed by normalisation and
 * ReLU; channels base·2^i; 2×2×2 max-pool down, learned ×2 upsampling up, skip concatenation,
 * a 1×1×1 head to numClasses and softmax. Input layout NDHWC = [N, X, Y, Z, C].
 *
 * Weights are tf.Variables (running statistics with trainable = false) addressed by the names
 * of the flat manifest (config.ts), which is also the federation's exchange format.
 */
import * as tf from '@tensorflow/tfjs-core';
import '../backend/gradients/index.ts';
import { PatchFedError } from '../../shared/errors.ts';
import { finiteCheck, inspectWeights, manifestCheck } from '../../shared/codec/index.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../../shared/weights.ts';
import { buildManifest, initialValues, requiredDivisor, resolveUNetConfig, type UNetConfig, type UNetConfigInput } from '../../shared/model/index.ts';
import { batchNormInference, batchNormTraining, updatedRunningStats } from './ops/batch-norm.ts';
import { instanceNorm } from './ops/instance-norm.ts';
import { learnedUpsample2x } from './ops/upsample.ts';

export class UNet3D {
  readonly config: UNetConfig;
  private readonly specs: WeightSpec[];
  private readonly variables = new Map<string, tf.Variable>();
  private disposed = false;

  constructor(config: UNetConfigInput) {
    this.config = resolveUNetConfig(config);
    this.specs = buildManifest(this.config);
    for (const spec of this.specs) {
      const values = initialValues(spec, this.config.seed);
      // Unnamed: tf variable names are process-global, and several models may coexist.
      const variable = tf.tidy(() => tf.variable(tf.tensor(values, spec.shape, 'float32'), spec.trainable));
      this.variables.set(spec.name, variable);
    }
  }

  /** Variables the optimiser updates, in manifest order (pass as varList to minimize). */
  get trainableVariables(): tf.Variable[] {
    this.assertAlive();
    return this.specs.filter((s) => s.trainable).map((s) => this.variables.get(s.name)!);
  }

  /** Number of trainable scalars (running statistics excluded, like PyTorch's parameters()). */
  get parameterCount(): number {
    return this.specs.filter((s) => s.trainable).reduce((n, s) => n + sizeOf(s.shape), 0);
  }

  manifest(): WeightSpec[] {
    return this.specs.map((s) => ({ ...s, shape: [...s.shape] }));
  }

  /**
   * Pre-softmax scores [N, X, Y, Z, numClasses]. With training = true, batch norm normalises with
   * batch statistics and updates its running statistics (momentum 0.1); otherwise it uses them.
   */
  logits(x: tf.Tensor5D, training: boolean): tf.Tensor5D {
    this.assertAlive();
    this.assertInput(x);
    return tf.tidy(() => {
      const { depth } = this.config;
      const skips: tf.Tensor5D[] = [];
      let h: tf.Tensor5D = x;
      for (let i = 0; i < depth; i++) {
        h = this.stage(`enc${i}`, h, training);
        if (i < depth - 1) {
          skips.push(h);
          h = tf.maxPool3d(h, 2, 2, 'valid');
        }
      }
      for (let i = depth - 2; i >= 0; i--) {
        const up = learnedUpsample2x(h, this.v5(`dec${i}/up/kernel`), this.v1(`dec${i}/up/bias`));
        h = this.stage(`dec${i}`, tf.concat([skips[i]!, up], 4) as tf.Tensor5D, training);
      }
      return tf.add(tf.conv3d(h, this.v5('head/kernel'), 1, 'valid'), this.v1('head/bias')) as tf.Tensor5D;
    });
  }

  /** Softmax probabilities [N, X, Y, Z, numClasses] (the SegmentationNet interface). */
  forward(x: tf.Tensor5D, training: boolean): tf.Tensor5D {
    return tf.tidy(() => tf.softmax(this.logits(x, training)) as tf.Tensor5D);
  }

  /** Inference-mode probabilities. */
  predict(x: tf.Tensor5D): tf.Tensor5D {
    return this.forward(x, false);
  }

  /** A copy of every weight, in manifest order. */
  getWeights(): NamedWeights {
    this.assertAlive();
    return {
      manifest: this.manifest(),
      values: this.specs.map((s) => Float32Array.from(this.variables.get(s.name)!.dataSync() as Float32Array)),
    };
  }

  /** Replaces every weight; refuses (changing nothing) on any name, shape, size or non-finite mismatch. */
  setWeights(weights: NamedWeights): void {
    this.assertAlive();
    validateWeightsFor(this.specs, weights, 'weights');
    tf.tidy(() => {
      this.specs.forEach((spec, i) => this.variables.get(spec.name)!.assign(tf.tensor(weights.values[i]!, spec.shape, 'float32')));
    });
  }

  dispose(): void {
    if (this.disposed) return;
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
    this.disposed = true;
  }

  private stage(prefix: string, x: tf.Tensor5D, training: boolean): tf.Tensor5D {
    let h = x;
    for (const j of [1, 2]) {
      h = tf.add(tf.conv3d(h, this.v5(`${prefix}/conv${j}/kernel`), 1, 'same'), this.v1(`${prefix}/conv${j}/bias`)) as tf.Tensor5D;
      h = tf.relu(this.normalise(`${prefix}/norm${j}`, h, training));
    }
    return h;
  }

  private normalise(prefix: string, x: tf.Tensor5D, training: boolean): tf.Tensor5D {
    const gamma = this.v1(`${prefix}/gamma`);
    const beta = this.v1(`${prefix}/beta`);
    if (this.config.norm === 'instance') return instanceNorm(x, gamma, beta);
    const runningMean = this.variables.get(`${prefix}/running_mean`)!;
    const runningVar = this.variables.get(`${prefix}/running_var`)!;
    if (!training) return batchNormInference(x, gamma, beta, runningMean as tf.Tensor1D, runningVar as tf.Tensor1D);
    const batch = batchNormTraining(x, gamma, beta);
    // Assigning keeps the new values alive past the enclosing tidy; the tape never sees them.
    const next = updatedRunningStats(runningMean as tf.Tensor1D, runningVar as tf.Tensor1D, batch);
    runningMean.assign(next.mean);
    runningVar.assign(next.variance);
    tf.dispose([next.mean, next.variance]);
    return batch.y;
  }

  private v5(name: string): tf.Tensor5D {
    return this.variables.get(name)! as tf.Tensor as tf.Tensor5D;
  }

  private v1(name: string): tf.Tensor1D {
    return this.variables.get(name)! as tf.Tensor as tf.Tensor1D;
  }

  private assertAlive(): void {
    if (this.disposed) throw new Error('UNet3D used after dispose()');
  }

  private assertInput(x: tf.Tensor): void {
    const { inChannels } = this.config;
    const divisor = requiredDivisor(this.config);
    if (x.rank !== 5) {
      throw new PatchFedError('model-input', `U-Net input must be rank 5 [N, X, Y, Z, C]; got shape [${x.shape}].`, { subject: 'input' });
    }
    if (x.shape[4] !== inChannels) {
      throw new PatchFedError('model-input', `U-Net input has ${x.shape[4]} channels; the model expects ${inChannels}.`, { subject: 'input' });
    }
    const spatial = x.shape.slice(1, 4);
    if (spatial.some((d) => d <= 0 || d % divisor !== 0)) {
      throw new PatchFedError(
        'model-input',
        `U-Net input spatial size [${spatial}] must be positive and divisible by ${divisor} (2^(depth−1), depth ${this.config.depth}).`,
        { subject: 'input' },
      );
    }
  }
}

/**
 * Checks that `weights` fits `specs` exactly (same names in the same order, same shapes and roles,
 * value arrays of the right length, all finite) through the shared validation path. `what` names
 * the source in messages (a file, a site).
 */
export function validateWeightsFor(specs: readonly WeightSpec[], weights: NamedWeights, what: string): void {
  inspectWeights(weights, [manifestCheck(specs, what), finiteCheck(what)], what);
}
