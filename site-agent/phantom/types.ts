import type { Geometry } from '../../shared/geometry.ts';
import type { SiteStyle } from './site-style.ts';

export type PhantomTask = 'brain' | 'liver';
export const PHANTOM_TASKS: readonly PhantomTask[] = ['brain', 'liver'];

/** Which case of which dataset: every case has its own random streams derived from these. */
export interface CaseKey {
  task: PhantomTask;
  seed: number;
  style: SiteStyle;
  /** 0-based index over training then test cases. */
  caseIndex: number;
}

/** One generated case, already in the site's stored voxel order (flips applied). */
export interface PhantomCase {
  /** Brain: float32 [X,Y,Z,4]; liver: int16 [X,Y,Z]. NIfTI order, x fastest. */
  image: Float32Array | Int16Array;
  imageDims: number[];
  imageDatatype: 'float32' | 'int16';
  /** uint8 [X,Y,Z], same grid as the image. */
  label: Uint8Array;
  labelDims: [number, number, number];
  geometry: Geometry;
  /** What was planted (for tests and reports): tumour or lesion counts, voxel counts per label. */
  facts: CaseFacts;
}

export interface CaseFacts {
  /** Brain: tumours placed; liver: lesions with at least one voxel. */
  lesions: number;
  /** Voxels per label value, index = label. */
  labelVoxels: number[];
}

export function countLabels(label: Uint8Array, classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < label.length; i++) counts[label[i]!]!++;
  return counts;
}
