/**
 * PatchFed's dataset layer: Medical Segmentation Decathlon folders (dataset.json + imagesTr/,
 * labelsTr/, imagesTs/), validated from headers, decoded lazily, preprocessed nnU-Net style,
 * cached within a byte bound. tfjs helpers live in ./tensors.ts (import them directly).
 */
export { openMsdDataset, MsdDataset, DEFAULT_CACHE_MB, formatProblems } from './msd-dataset.ts';
export type { OpenMsdDatasetOptions, DatasetCacheStats } from './msd-dataset.ts';
export { scanMsdDataset } from './scan.ts';
export type { MsdScan, MsdCaseInfo, MsdTestImageInfo, ScanOptions } from './scan.ts';
export { readDatasetManifest, parseDatasetJson, datasetJsonSchema, caseIdFromPath } from './manifest.ts';
export type { DatasetJson, DatasetManifest, DatasetProblem, LabelClass } from './manifest.ts';
export { BadCaseError } from './decode.ts';
export { splitCaseIds, splitSizes } from './split.ts';
export type { DatasetSplit } from './split.ts';
export {
  channelSchemes,
  isCtModality,
  nonZeroStats,
  percentileOfSorted,
  CtForegroundPool,
  CT_SAMPLES_PER_CASE,
  toChannelsFirstNormalized,
  toRowMajor3d,
  channelTransforms,
} from './normalize.ts';
export type { ChannelScheme, ChannelTransform, CtChannelStats } from './normalize.ts';
export { preprocessCase, preprocessImage, convertLabel, imageLayout, preprocessedBytes } from './preprocess.ts';
export type { PreprocessedCase, PreprocessedImage, LabelConversion } from './preprocess.ts';
export { inspectMsdDataset } from './inspect-dataset.ts';
export type { DatasetInspection, InspectedCase, InspectedTestImage, InspectDatasetOptions } from './inspect-dataset.ts';
export { ByteLruCache } from './lru-cache.ts';
