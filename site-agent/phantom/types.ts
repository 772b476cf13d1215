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
  /** A context phantom (context.ts): deep grid, stretched in-plane voxels, context-dependent structures. */
  context?: boolean;
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
  /** Context phantoms only: uint8 [X,Y,Z] of CONTEXT_ROLE codes (context.ts), stored order like `label`. */
  contextMap?: Uint8Array;
}

export interface CaseFacts {
  /** Brain: tumours placed; liver: lesions with at least one voxel. */
  lesions: number;
  /** Voxels per label value, index = label. */
  labelVoxels: number[];
  /**
   * Context phantoms only: tubes joined to their landmark (brain: oedema tracts; liver: the
   * inferior liver tongue) and look-alikes that are not (background), with their voxel counts.
   */
  context?: {
    connected: number;
    lookalikes: number;
    connectedVoxels: number;
    lookalikeVoxels: number;
    /** Of those, the voxels in slices no 16-voxel slab reaches the landmark from (context.ts beyondSlabVoxels). */
    connectedBeyondSlab: number;
    lookalikeBeyondSlab: number;
  };
}

export function countLabels(label: Uint8Array, classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < label.length; i++) counts[label[i]!]!++;
  return counts;
}
