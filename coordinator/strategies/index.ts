export type { Aggregator, FitInstructions, FitPlan, Rng, SiteInfo, Strategy, StrategyName } from './types.ts';
export { SampleWeightedStrategy, DEFAULT_SAMPLING, type SamplingPolicy } from './sample-weighted.ts';
export { fedAvg } from './fedavg.ts';
export { fedProx } from './fedprox.ts';
export { fedBN, FEDBN_LOCAL_ROLES } from './fedbn.ts';
export { createStrategy } from './config.ts';
export { StreamingWeightedMean, type StreamingMeanOptions } from './streaming-mean.ts';
export { sampleSites, sampleSize, type SamplingOptions } from './sampling.ts';
export { roundRng } from './rng.ts';
