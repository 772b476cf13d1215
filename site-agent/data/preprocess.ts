/**
 * Decoded NIfTI volumes -> a preprocessed case: channels-first float32 image (C, X, Y, Z) and
 * uint8 label (X, Y, Z), both row-major with z fastest (see normalize.ts for the transpose).
 * Plain typed arrays, no tensors: the training code decides when tensors exist.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { Geometry } from '../../shared/geometry.ts';
import type { Volume } from '../../shared/volume.ts';
import type { LabelClass } from './manifest.ts';
import { channelTransforms, toChannelsFirstNormalized, toRowMajor3d, type ChannelScheme, type ChannelTransform, type CtChannelStats } from './normalize.ts';

export interface PreprocessedImage {
  id: string;
  /** Normalised intensities, row-major (C, X, Y, Z): index ((c*X + x)*Y + y)*Z + z. */
  image: Float32Array;
  /** Spatial shape [X, Y, Z]. */
  shape: [number, number, number];
  channels: number;
  /** Geometry of the source image (to write predictions back in place). */
  geometry: Geometry;
  /** The per-channel transform that was applied (for logs and for reproducing it). */
  normalization: ChannelTransform[];
}

export interface PreprocessedCase extends PreprocessedImage {
  /** Label values, row-major (X, Y, Z): index (x*Y + y)*Z + z. */
  label: Uint8Array;
  /** Voxels per declared label value (0 for classes absent from this case). */
  labelCounts: Map<number, number>;
}

export function preprocessedBytes(c: PreprocessedImage & { label?: Uint8Array }): number {
  return c.image.byteLength + (c.label?.byteLength ?? 0);
}

/** [X, Y, Z] and channel count of an image volume: dims [X,Y,Z] (1 channel) or [X,Y,Z,C]. */
export function imageLayout(dims: readonly number[], file: string): { shape: [number, number, number]; channels: number } {
  const d = [...dims];
  // Trailing singleton dimensions carry no data (e.g. a 3-D label stored as [X,Y,Z,1]).
  while (d.length > 3 && d[d.length - 1] === 1) d.pop();
  if (d.length > 4) {
    throw new PatchFedError('image-dims', `${file}: image has ${d.length} dimensions (${dims.join('x')}); expected 3-D (X,Y,Z) or 4-D (X,Y,Z,channels)`, { subject: file });
  }
  // Missing dimensions are 1 (a 2-D or 1-D image is one slice thick; a 3-D image has one channel).
  const [x = 1, y = 1, z = 1, channels = 1] = d;
  return { shape: [x, y, z], channels };
}

export interface LabelConversion {
  /** Row-major (X, Y, Z) uint8 labels. */
  label: Uint8Array;
  /** Voxel count for each label value of the dataset (0 for absent classes). */
  counts: Map<number, number>;
}

/**
 * Check every label value is an integer the dataset declares, count them, and convert to
 * row-major uint8. Throws PatchFedError naming the file and the offending values.
 */
export function convertLabel(volume: Volume, labels: readonly LabelClass[], file: string): LabelConversion {
  const layout = imageLayout(volume.dims, file);
  if (layout.channels !== 1) {
    throw new PatchFedError('label-dims', `${file}: label has ${layout.channels} channels (${volume.dims.join('x')}); a label map must be 3-D`, { subject: file });
  }
  const allowed = new Uint8Array(256);
  for (const l of labels) allowed[l.value] = 1;
  const tally = new Float64Array(256);
  const bad = new Set<number>();
  let more = false;
  const src = volume.data;
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    // (v >>> 0) === v holds exactly for integers in [0, 2^32): cheaper than Number.isInteger.
    if (v <= 255 && (v >>> 0) === v && allowed[v] === 1) tally[v]!++;
    else if (bad.size < 8) bad.add(v);
    else if (!bad.has(v)) more = true;
  }
  if (bad.size > 0) {
    const shown = [...bad].sort((a, b) => a - b);
    const declared = labels.map((l) => l.value).join(', ');
    throw new PatchFedError(
      'label-values',
      `${file}: label values ${shown.join(', ')}${more ? ', ...' : ''} are not among the dataset's labels (${declared})`,
      { subject: file },
    );
  }
  const counts = new Map<number, number>();
  for (const l of labels) counts.set(l.value, tally[l.value]!);
  return { label: toRowMajor3d(src, layout.shape, new Uint8Array(src.length)), counts };
}

export function preprocessImage(
  id: string,
  volume: Volume,
  schemes: readonly ChannelScheme[],
  ctStats: readonly (CtChannelStats | undefined)[],
  file: string,
): PreprocessedImage {
  const { shape, channels } = imageLayout(volume.dims, file);
  if (channels !== schemes.length) {
    throw new PatchFedError('channel-count', `${file}: image has ${channels} channel(s) but the dataset lists ${schemes.length} modalities`, { subject: file });
  }
  const voxels = shape[0] * shape[1] * shape[2];
  const normalization = channelTransforms(volume.data, voxels, schemes, ctStats);
  const image = toChannelsFirstNormalized(volume.data, shape, normalization);
  return { id, image, shape, channels, geometry: volume.geometry, normalization };
}

export function preprocessCase(
  id: string,
  image: Volume,
  labelVolume: Volume,
  opts: {
    schemes: readonly ChannelScheme[];
    ctStats: readonly (CtChannelStats | undefined)[];
    labels: readonly LabelClass[];
    imageFile: string;
    labelFile: string;
  },
): PreprocessedCase {
  const img = imageLayout(image.dims, opts.imageFile);
  const lab = imageLayout(labelVolume.dims, opts.labelFile);
  if (img.shape.some((v, i) => v !== lab.shape[i])) {
    throw new PatchFedError('shape-mismatch', `${opts.labelFile}: label shape ${lab.shape.join('x')} does not match image shape ${img.shape.join('x')} (${opts.imageFile})`, { subject: opts.labelFile });
  }
  const { label, counts } = convertLabel(labelVolume, opts.labels, opts.labelFile);
  const pre = preprocessImage(id, image, opts.schemes, opts.ctStats, opts.imageFile);
  return { ...pre, label, labelCounts: counts };
}
