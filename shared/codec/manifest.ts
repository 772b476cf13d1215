/**
 * Schema of a weights manifest as it arrives from a peer, and the comparison against the
 * manifest the receiver expects. Both produce PatchFedErrors naming the tensor.
 */
import { z } from 'zod';
import { PatchFedError } from '../errors.ts';
import type { WeightRole, WeightSpec } from '../weights.ts';

export const MAX_TENSORS = 4096;
export const MAX_TENSOR_NAME_LENGTH = 256;
export const MAX_TENSOR_RANK = 8;

const WEIGHT_ROLES = ['conv-kernel', 'conv-bias', 'norm-gamma', 'norm-beta', 'norm-running-mean', 'norm-running-var'] as const;
// Compile-time check that the list above is exactly shared/weights.ts's WeightRole.
type _RolesMatch = [WeightRole] extends [(typeof WEIGHT_ROLES)[number]] ? ([(typeof WEIGHT_ROLES)[number]] extends [WeightRole] ? true : never) : never;
const _rolesMatch: _RolesMatch = true;
void _rolesMatch;

/** Printable, no control characters: names end up in logs and error messages. */
export const tensorNameSchema = z.string().min(1).max(MAX_TENSOR_NAME_LENGTH).regex(/^[\x20-\x7e]+$/, 'must be printable ASCII');

const weightSpecSchema = z.strictObject({
  name: tensorNameSchema,
  shape: z.array(z.int().min(1).max(2 ** 31 - 1)).max(MAX_TENSOR_RANK),
  trainable: z.boolean(),
  role: z.enum(WEIGHT_ROLES),
});

const manifestSchema = z.strictObject({ tensors: z.array(weightSpecSchema).max(MAX_TENSORS) });

export function parseManifestJson(text: string, source: string): WeightSpec[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new PatchFedError('weights-bad-manifest', `${source}: manifest is not valid JSON.`, { subject: source });
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!; // zod: a failed parse has at least one issue
    const [, index] = issue.path;
    const name = typeof index === 'number' ? (raw as { tensors?: { name?: unknown }[] }).tensors?.[index]?.name : undefined;
    const where = typeof name === 'string' ? `tensor '${name.slice(0, MAX_TENSOR_NAME_LENGTH)}'` : `manifest.${issue.path.join('.')}`;
    throw new PatchFedError('weights-bad-manifest', `${source}: ${where}: ${issue.message} (at ${issue.path.join('.') || 'top level'}).`, { subject: source });
  }
  const seen = new Set<string>();
  for (const spec of parsed.data.tensors) {
    if (seen.has(spec.name)) throw new PatchFedError('weights-bad-manifest', `${source}: tensor name '${spec.name}' appears twice.`, { subject: spec.name });
    seen.add(spec.name);
  }
  return parsed.data.tensors;
}

/** Same tensors, in the same order, with the same shapes and roles. */
export function checkManifestMatches(expected: readonly WeightSpec[], actual: readonly WeightSpec[], source: string): void {
  for (const [i, e] of expected.entries()) {
    const a = actual[i];
    if (a === undefined) break; // a shorter list is reported below
    if (e.name !== a.name) {
      throw new PatchFedError('weights-manifest-mismatch', `${source}: tensor ${i} should be '${e.name}', got '${a.name}'.`, { subject: a.name });
    }
    if (e.shape.length !== a.shape.length || e.shape.some((d, k) => d !== a.shape[k])) {
      throw new PatchFedError('weights-manifest-mismatch', `${source}: tensor '${e.name}' should have shape [${e.shape}], got [${a.shape}].`, { subject: e.name });
    }
    if (e.role !== a.role || e.trainable !== a.trainable) {
      throw new PatchFedError('weights-manifest-mismatch', `${source}: tensor '${e.name}' should be ${e.role}${e.trainable ? '' : ' (not trainable)'}, got ${a.role}${a.trainable ? '' : ' (not trainable)'}.`, { subject: e.name });
    }
  }
  if (expected.length !== actual.length) {
    const missing = expected[actual.length];
    const extraOrMissing = missing ? `is missing '${missing.name}'` : `has an extra tensor '${actual[expected.length]?.name}'`;
    throw new PatchFedError('weights-manifest-mismatch', `${source}: expected ${expected.length} tensors, got ${actual.length} (${extraOrMissing}).`, { subject: source });
  }
}
