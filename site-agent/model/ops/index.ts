export { batchNormTraining, batchNormInference, updatedRunningStats, BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM } from './batch-norm.ts';
export type { BatchNormTrainingResult } from './batch-norm.ts';
export { instanceNorm, INSTANCE_NORM_EPSILON } from './instance-norm.ts';
export { learnedUpsample2x } from './upsample.ts';
