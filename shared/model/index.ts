/** The model contract shared by coordinator and sites: pure data, no tensors, no tfjs. */
export { STAGES, isStage, isWholeVolumeStage, isPatchWiseStage, thesisIncludeBackground, stagePrefix, stagesForMode, type Stage, type StageInput } from './stage.ts';
export { experimentLayout, forEachInitialTensor, initialGlobalWeights, layoutManifest, roundTrainingSeed, stageManifest, stageSeed, type LayoutSource, type ModelLayout } from './layout.ts';
export { initialValues } from './init.ts';
export {
  buildManifest,
  MAX_PARAMETERS,
  requiredDivisor,
  resolveUNetConfig,
  stageChannels,
  UNET_DEFAULTS,
  UNET_PRESETS,
  validateUNetConfig,
  type UNetConfig,
  type UNetConfigInput,
} from './unet-layout.ts';
