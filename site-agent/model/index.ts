/** The 3D U-Net (thesis §2.2.1) on tfjs and its artifacts; its pure layout lives in shared/model. */
export { UNet3D, validateWeightsFor } from './unet.ts';
export { loadModelArtifacts, readModelArtifacts, saveModelArtifacts, saveWeightsArtifacts, MODEL_FORMAT, MODEL_JSON, WEIGHTS_BIN } from './artifacts.ts';
export type { ModelArtifacts, ModelJson, ModelMeta, WeightsManifestEntry } from './artifacts.ts';
