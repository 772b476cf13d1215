export { startCoordinator, type CheckpointSummary, type CoordinatorEventEmitter, type CoordinatorState, type RunningCoordinator, type StartCoordinatorOptions } from './coordinator.ts';
export type { CoordinatorEventName, CoordinatorEvents } from './events.ts';
export { createPinoLog, silentLog, type Log, type LogLevel, type PinoLog } from './log.ts';
export { RESUME_HINT, type ExperimentEnd } from './scheduler.ts';
export { repairCoordinatorState, type RepairReport } from './repair.ts';
export type { HealthStatus } from './health.ts';
export { loadCoordinatorConfig, prepareCoordinator, type CoordinatorSetup, type EnrolledSite } from './setup.ts';
export { describeExperiment, signedExperimentMessage } from './experiment.ts';
