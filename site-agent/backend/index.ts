/** Compute backend selection and the gradient self-check that guards training. */
export { selectBackend, assertTrainableBackend, parseBackendChoice } from './select.ts';
export type { BackendReport, BackendLog, SelectionDeps } from './select.ts';
export { BACKEND_CHOICES, defaultCandidates, fastCpuCandidate, prepareGpuEnvironment, visibleCudaDevices } from './candidates.ts';
export type { BackendChoice, BackendCandidate, CandidateResult, KernelsModule, LoadedBackend } from './candidates.ts';
export { gradientSelfCheck, SELF_CHECK_TOLERANCE } from './self-check.ts';
export type { SelfCheckResult } from './self-check.ts';
export { checkDirectionalDerivatives, maxRelError } from './gradient-check.ts';
export type { DirectionalCheck, GradientCheckOptions } from './gradient-check.ts';
export { registerCoreGradients } from './gradients/index.ts';
