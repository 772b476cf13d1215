/**
 * What an exported stage needs to be used correctly outside PatchFed, as ONNX metadata_props
 * (string → string; structured values are JSON): input layout, channel order and modality names,
 * intensity normalisation, spacing, the window, label names and values, and — for the cascade —
 * how the two stages connect; plus where the weights came from.
 */
import { isWholeVolumeStage } from '../../shared/model/index.ts';
import type { CheckpointDir } from '../inference/checkpoint-dir.ts';
import { DEFAULT_WINDOW_DIVISORS, type PredictionModel, type PredictionStage } from '../inference/prediction-model.ts';

export const EXPORT_FORMAT = 'patchfed-unet3d-onnx/1';

/** Per channel, what to do to the raw image values before they enter the model. */
export function normalisationSpec(model: PredictionModel): Record<string, unknown>[] {
  return model.schemes.map((scheme, c) => {
    const modality = model.modalities?.[c] ?? `channel ${c}`;
    if (scheme === 'nonzero-zscore') {
      return { channel: c, modality, scheme, description: 'z-score over the non-zero voxels of this channel of this case: (v − mean) / max(std, 1e-8) for v ≠ 0; zero voxels stay 0' };
    }
    const s = model.ctStats[c];
    return {
      channel: c,
      modality,
      scheme,
      description: 'clip to [lower, upper], then (v − mean) / max(std, 1e-8), with dataset-wide foreground statistics',
      ...(s ? { lower: s.lower, upper: s.upper, mean: s.mean, std: s.std } : { statistics: 'not included: each site computed its own; give --site-config when exporting' }),
    };
  });
}

/** Channel names a stage takes, in order: the modalities, plus stage 1's one-hot foreground for cascade stage 2. */
export function stageChannelNames(model: PredictionModel, stage: PredictionStage): string[] {
  const modalities = model.modalities ?? Array.from({ length: model.channels }, (_, c) => `channel ${c}`);
  if (stage.stage !== 'cascade-stage2') return modalities;
  const labels = model.labelNames ?? Array.from({ length: model.numClasses }, (_, k) => `class ${k}`);
  return [...modalities, ...labels.slice(1).map((l) => `stage-1 one-hot: ${l}`)];
}

function windowSpec(model: PredictionModel, stage: PredictionStage): string {
  if (isWholeVolumeStage(stage.stage)) return `whole volume: zero-pad each axis to a multiple of ${model.divisor}, predict once, crop back`;
  const how = `overlap ${model.overlap}, ${model.blend === 'gaussian' ? 'Gaussian weighting (sigma = 0.125·window, min weight 0.001)' : 'constant weighting'}, last window flush with the volume end`;
  return stage.patch
    ? `sliding window ${stage.patch.join('x')} (the training patch), ${how}`
    : `sliding window, any multiple of ${model.divisor} per axis; none recorded (PatchFed's default is ${DEFAULT_WINDOW_DIVISORS * model.divisor} per axis, clipped to the volume; instance-norm models predict best near the sites' training patches), ${how}`;
}

function cascadeSpec(model: PredictionModel, stage: PredictionStage): string | undefined {
  if (stage.stage === 'cascade-stage1') {
    return `stage 1 of 2: run on the normalised image resampled (trilinear, half-pixel centres, clamped) to round(dim·${model.cascadeFactor}) per axis rounded up to a multiple of ${model.divisor}; take the argmax, upsample it by nearest neighbour to the full grid, and append its one-hot foreground classes to the image as stage 2's extra channels`;
  }
  if (stage.stage === 'cascade-stage2') return `stage 2 of 2: input = the normalised image channels + the one-hot foreground of stage 1's upsampled argmax (channel order in input.channels); output = the segmentation`;
  return undefined;
}

export function onnxMetadata(model: PredictionModel, stage: PredictionStage, checkpoint: CheckpointDir | undefined, producerVersion: string): Record<string, string> {
  const { config } = stage.net;
  const labels = model.labelNames ?? Array.from({ length: model.numClasses }, (_, k) => `class ${k}`);
  const meta: Record<string, string> = {
    'patchfed.format': EXPORT_FORMAT,
    'patchfed.version': producerVersion,
    'patchfed.mode': model.mode,
    'patchfed.stage': stage.stage,
    'input.layout': `NCDHW float32 [batch, channel, x, y, z]: x, y, z are the image's voxel axes as stored in the NIfTI file (i, j, k; no reorientation); each must be a multiple of ${model.divisor}`,
    'input.channels': JSON.stringify(stageChannelNames(model, stage)),
    'input.modalities': JSON.stringify(model.modalities ?? []),
    'input.normalization': JSON.stringify(normalisationSpec(model)),
    'input.spacing': 'native: no resampling to a common spacing; the model runs on each image in its own voxel grid, as the sites trained',
    'input.window': windowSpec(model, stage),
    'output.layout': `NCDHW float32 [batch, class, x, y, z]: softmax probabilities over ${config.numClasses} classes; the segmentation is the argmax over the class axis`,
    'output.labels': JSON.stringify(Object.fromEntries(labels.map((l, k) => [String(k), l]))),
    'output.label_values': JSON.stringify(model.labelValues),
    'model.architecture': JSON.stringify({ inChannels: config.inChannels, numClasses: config.numClasses, base: config.base, depth: config.depth, norm: config.norm }),
    'model.normalization_layers': model.notes.find((n) => n.startsWith('normalisation layers:'))?.slice('normalisation layers: '.length) ?? `${config.norm} norm`,
  };
  const cascade = cascadeSpec(model, stage);
  if (cascade) meta['patchfed.cascade'] = cascade;
  if (checkpoint) {
    const m = checkpoint.meta;
    Object.assign(meta, {
      'provenance.experiment': checkpoint.description.id,
      'provenance.task': checkpoint.description.task,
      'provenance.strategy': checkpoint.description.strategy.name,
      'provenance.checkpoint_version': String(m.version),
      'provenance.checkpoint_round': String(m.round),
      'provenance.checkpoint_sha256': m.sha256,
      'provenance.checkpoint_signature': m.signature,
      'provenance.checkpoint_key_id': m.keyId,
      'provenance.checkpoint_verified': checkpoint.verification.verified ? `yes (coordinator key ${checkpoint.verification.keyFingerprint ?? '?'})` : 'no (exported without the coordinator key)',
    });
  } else {
    meta['provenance.source'] = `local training output ${model.where}`;
  }
  return meta;
}
