/**
 * meta.json of a checkpoint, and the exact bytes its signature covers. The signature binds the
 * artifact hash to the experiment, version and round, so a validly signed checkpoint cannot be
 * replayed as another version or into another experiment.
 */
import { z } from 'zod';

export const CHECKPOINT_FORMAT = 'patchfed-checkpoint/1';
export const ARTIFACT_FILE = 'weights.pfw';
export const META_FILE = 'meta.json';

export const checkpointMetaSchema = z.object({
  format: z.literal(CHECKPOINT_FORMAT),
  version: z.number().int().min(1),
  round: z.number().int().min(0),
  experimentId: z.string().min(1),
  createdAt: z.string().min(1),
  artifact: z.literal(ARTIFACT_FILE),
  sizeBytes: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** base64 of signer(checkpointSigningPayload(meta)). */
  signature: z.string().min(1),
  keyId: z.string().min(1),
  /** Retention never deletes a checkpoint marked best. Not covered by the signature. */
  best: z.boolean(),
  /** Caller's unsigned annotations (codec version, metrics summary...). */
  extra: z.record(z.string(), z.unknown()).optional(),
});

export type CheckpointMeta = z.infer<typeof checkpointMetaSchema>;

/** The signed statement; sites rebuild it from meta.json to verify a downloaded checkpoint. */
export function checkpointSigningPayload(meta: Pick<CheckpointMeta, 'experimentId' | 'version' | 'round' | 'sha256' | 'sizeBytes'>): Uint8Array {
  const fields = [meta.experimentId, meta.version, meta.round, meta.sha256, meta.sizeBytes];
  return new TextEncoder().encode(`${CHECKPOINT_FORMAT}\n${JSON.stringify(fields)}`);
}

/** Directory name of a version: v000001 ... v999999, then more digits. */
export function versionDirName(version: number): string {
  return `v${String(version).padStart(6, '0')}`;
}

export function parseVersionDirName(name: string): number | undefined {
  const m = /^v(\d{6,})$/.exec(name);
  if (!m) return undefined;
  const v = Number(m[1]);
  return Number.isSafeInteger(v) && v >= 1 && versionDirName(v) === name ? v : undefined;
}
