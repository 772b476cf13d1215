/** Site-level differential privacy shared by sites and coordinator: clipping, noise, samplers. The accountant is coordinator/privacy. */
export { addGaussianNoise, checkDpSettings, clipFactor, clipInPlace, l2Norm, noiseStd, type DpMode, type DpSettings } from './clip-and-noise.ts';
export { secureGaussian, seededGaussian, type GaussianSampler } from './gaussian.ts';
export { privatiseSiteUpdate, type SiteDpInstructions, type SiteDpReport } from './site-update.ts';
