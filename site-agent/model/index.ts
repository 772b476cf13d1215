/** The 3D U-Net (thesis §2.2.1), its configuration, weights and artifacts. */
export { UNet3D, validateWeightsFor } from './unet.ts';
export {
  buildManifest,
  MAX_PARAMETERS,
  requiredDivisor,
  resolveUNetConfig,
  stageChannels,
  UNET_DEFAULTS,
  UNET_PRESETS,
  validateUNetConfig,
} from './config.ts';
export type { UNetConfig, UNetConfigInput } from './config.ts';
export { loadModelArtifacts, readModelArtifacts, saveModelArtifacts, saveWeightsArtifacts, MODEL_FORMAT, MODEL_JSON, WEIGHTS_BIN } from './artifacts.ts';
export type { ModelArtifacts, ModelJson, ModelMeta, WeightsManifestEntry } from './artifacts.ts';
export { initialValues } from './init.ts';
export { SeededRandom, deriveSeed } from './random.ts';
