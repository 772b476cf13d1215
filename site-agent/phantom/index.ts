/**
 * `patchfed phantom`: synthetic hospitals in the exact MSD format.
 *
 *   generatePhantomDataset(opts) -> Promise<PhantomDatasetResult>  DIR/dataset.json + imagesTr/labelsTr/imagesTs
 *   generatePhantomCase(opts)    -> PhantomCase                    one case in memory, no files
 *   siteStyle(k)                 -> SiteStyle                      the scanner and case mix of site style k
 * `context: true` gives a context phantom (context.ts): structures only context beyond a slab tells apart.
 */
export {
  generatePhantomDataset,
  generatePhantomCase,
  phantomCaseIds,
  MARKER_VOXELS,
  PHANTOM_GENERATOR,
  PHANTOM_GENERATOR_VERSION,
  PHANTOM_MAX_AXIS,
  PHANTOM_MAX_CASES,
  PHANTOM_MAX_VOXELS,
  PHANTOM_MIN_AXIS,
} from './dataset.ts';
export type { PhantomCaseOptions, PhantomDatasetOptions, PhantomDatasetResult, PlantedMarker } from './dataset.ts';
export { siteStyle, orientationCode, SITE_ARCHETYPES } from './site-style.ts';
export type { SiteStyle, MriScanner, CtScanner, CaseMix } from './site-style.ts';
export { BRAIN_LABELS, BRAIN_MODALITIES, BRAIN_PROFILES, BRAIN_CHANNELS } from './brain.ts';
export { LIVER_LABELS, LIVER_MODALITIES, LIVER_HU } from './liver.ts';
export { PHANTOM_TASKS } from './types.ts';
export { phantomAnnotation, phantomLabelClasses, wholeTumourAnnotation } from './annotation.ts';
export { CONTEXT_ROLE, THESIS_LIKE_SHAPE, THESIS_SLAB, contextGrid } from './context.ts';
export { BRAIN_CONTEXT } from './brain-context.ts';
export { LIVER_CONTEXT } from './liver-context.ts';
export type { PhantomTask, PhantomCase, CaseFacts } from './types.ts';
