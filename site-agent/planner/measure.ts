/**
 * Measures what the estimate predicts, on the active tfjs backend: the peak of real training
 * steps (the trainer's own step: forward, dice-ce loss, backward, Adam update, profiled with
 * tf.profile exactly as trainer.ts does) and of an inference forward pass, plus the native
 * convolution workspace those steps grew (cpu-fast) and the process RSS.
 *
 * Engine bytes are reported relative to the tensors that were alive before the net was built,
 * so a dataset or another model held by the caller is not attributed to this configuration.
 */
import * as tf from '@tensorflow/tfjs-core';
import { loadNativeKernels } from '../kernels/native-addon.ts';
import { UNet3D } from '../model/unet.ts';
import type { LossKind } from '../train/trainer.ts';
import { trainStage } from '../train/trainer.ts';
import type { StageData } from '../train/stage-data.ts';
import type { TrainingBatch } from '../pipeline/sampler.ts';
import { createRng } from '../pipeline/sampler.ts';
import type { UNetShape } from './estimate.ts';
import { measureRssDelta } from './measure-rss.ts';

export interface MeasureRequest extends UNetShape {
  patch: [number, number, number];
  batch: number;
  /** Profiled training steps (default 2: the second one carries Adam's moments). */
  steps?: number;
  loss?: LossKind;
  includeBackground?: boolean;
  seed?: number;
}

export interface MeasuredPeak {
  backend: string;
  /** tf.profile peakBytes minus the engine bytes alive before the net existed. */
  engineBytes: number;
  /** Engine bytes that belonged to the caller (excluded above). */
  baselineBytes: number;
  /** Native convolution arena after the steps (0 on backends without one). */
  workspaceBytes: number;
  /** Process resident set after the steps (everything: JS heap, buffers, freed-but-kept pages). */
  rssBytes: number;
  /**
   * Peak RSS during the profiled steps minus RSS before them (the net's weights already exist;
   * Adam's moments, the tape, gradients and whatever the backend holds outside tfjs are in it).
   * null where the peak cannot be measured (measure-rss.ts; not Linux). Comparable with the
   * estimate's engine − weights (+ workspace on cpu-fast).
   */
  rssDeltaBytes: number | null;
}

/** A synthetic batch with a few classes present, so the loss and its gradients are the real ones. */
export function syntheticBatch(req: MeasureRequest): TrainingBatch {
  const [x, y, z] = req.patch;
  const n = req.batch * x * y * z;
  const rng = createRng(req.seed ?? 1);
  const image = new Float32Array(n * req.inChannels);
  for (let i = 0; i < image.length; i++) image[i] = rng() * 2 - 1;
  const labels = new Uint8Array(n);
  const oneHot = new Float32Array(n * req.classes);
  for (let i = 0; i < n; i++) {
    const k = Math.floor(((i % (x * y * z)) / (x * y * z)) * req.classes); // slabs along the first axis
    labels[i] = k;
    oneHot[i * req.classes + k] = 1;
  }
  return {
    image,
    imageShape: [req.batch, x, y, z, req.inChannels],
    labels,
    oneHot,
    oneHotShape: [req.batch, x, y, z, req.classes],
  };
}

function releaseNativeWorkspace(): void {
  const loaded = loadNativeKernels();
  if (loaded.ok) loaded.addon.releaseWorkspace();
}

function nativeWorkspaceBytes(): number {
  const loaded = loadNativeKernels();
  return loaded.ok && tf.getBackend() === 'cpu-fast' ? loaded.addon.workspaceReserved() : 0;
}

function newNet(req: MeasureRequest): UNet3D {
  return new UNet3D({ inChannels: req.inChannels, numClasses: req.classes, base: req.arch.base, depth: req.arch.depth, norm: req.arch.norm, seed: req.seed ?? 1 });
}

/** Peak of `steps` profiled training steps of a fresh net (trainer.ts's step, dice-ce by default). */
export async function measureTrainingPeak(req: MeasureRequest): Promise<MeasuredPeak> {
  const baselineBytes = tf.memory().numBytes;
  releaseNativeWorkspace();
  const net = newNet(req);
  try {
    const batch = syntheticBatch(req);
    const data = { nextBatch: async () => batch } as unknown as StageData;
    const steps = req.steps ?? 2;
    const { result: r, rss } = await measureRssDelta(() =>
      trainStage({
        net,
        data,
        steps,
        profileSteps: steps,
        learningRate: 3e-4,
        includeBackground: req.includeBackground ?? true,
        loss: req.loss ?? 'dice-ce',
      }),
    );
    if (!r.peakMemory) throw new Error('training step was not profiled');
    return {
      backend: tf.getBackend(),
      engineBytes: r.peakMemory.engineBytes - baselineBytes,
      baselineBytes,
      workspaceBytes: nativeWorkspaceBytes(),
      rssBytes: r.peakMemory.rssBytes,
      rssDeltaBytes: rss?.deltaBytes ?? null,
    };
  } finally {
    net.dispose();
  }
}

/** Peak of one inference forward pass (no tape) of a fresh net on one batch. */
export async function measureInferencePeak(req: MeasureRequest): Promise<MeasuredPeak> {
  const baselineBytes = tf.memory().numBytes;
  releaseNativeWorkspace();
  const net = newNet(req);
  try {
    const b = syntheticBatch(req);
    const info = await tf.profile(() => {
      tf.tidy(() => net.predict(tf.tensor5d(b.image, b.imageShape, 'float32')).dataSync());
      return [] as tf.Tensor[];
    });
    return {
      backend: tf.getBackend(),
      engineBytes: info.peakBytes - baselineBytes,
      baselineBytes,
      workspaceBytes: nativeWorkspaceBytes(),
      rssBytes: process.memoryUsage().rss,
      rssDeltaBytes: null,
    };
  } finally {
    net.dispose();
  }
}
