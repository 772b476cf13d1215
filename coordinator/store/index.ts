export {
  CheckpointStore,
  sha256Hex,
  type CheckpointStoreOptions,
  type Signer,
  type StoreLogEvent,
  type StoreRecoveryReport,
  type Verifier,
  type VerifyResult,
  type WriteCheckpointInput,
} from './checkpoints.ts';
export {
  ARTIFACT_FILE,
  CHECKPOINT_FORMAT,
  META_FILE,
  checkpointMetaSchema,
  checkpointSigningPayload,
  parseVersionDirName,
  versionDirName,
  type CheckpointMeta,
} from './checkpoint-meta.ts';
export { nodeFileIO, writeFileAtomic, writeFileDurable, fsyncDir, type FileIO } from './durable-fs.ts';
export {
  StateDb,
  type EventInput,
  type EventKind,
  type EventRecord,
  type ExperimentRecord,
  type MetricInput,
  type MetricRecord,
  type RoundRecord,
  type RoundRetry,
  type RoundStatus,
  type SiteInput,
  type SiteRecord,
  type SiteUpdateInput,
  type SiteUpdateRecord,
  type StateDbOptions,
  type StateReader,
  type UpdateStatus,
} from './state-db.ts';
export { MIGRATIONS } from './state-db-schema.ts';
export { recoverCoordinatorState, type RecoveryReport } from './recovery.ts';
