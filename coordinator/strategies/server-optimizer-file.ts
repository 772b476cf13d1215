/**
 * The server optimiser's state as a file in the checkpoint's version directory, so a restarted
 * coordinator resumes the optimiser exactly. The bytes are server-optimizers.ts's exact binary
 * form (float32 moments, bit for bit), base64-encoded in a JSON document because the checkpoint
 * store publishes extra files as `<name>.json` only:
 *
 *   {"format":"patchfed-server-optimizer/1","kind":"fedadam","step":3,"parameters":N,
 *    "sha256":"<of the binary form>","state":"<base64 of the binary form>"}
 *
 * "state" is the last field, so a reader parses the small header without parsing (or holding as
 * a JS string) the whole document; encoding and decoding go chunk by chunk, so a large model's
 * moments never exist as one string. The sha256 is also recorded in meta.json and checked when
 * the state is read back.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { PatchFedError } from '../../shared/errors.ts';
import { decodeServerOptimizerState, encodeServerOptimizerState, type ServerOptimizerState } from './server-optimizers.ts';

export const SERVER_OPTIMIZER_FILE = 'server-optimizer.json';
const FORMAT = 'patchfed-server-optimizer/1';
const STATE_FIELD = ',"state":"';
/** Bytes of binary per base64 chunk (a multiple of 3, so chunks concatenate to valid base64). */
const CHUNK_BYTES = 3 * 1024 * 1024;
/** Characters of base64 per decoded chunk (a multiple of 4). */
const CHUNK_CHARS = 4 * 1024 * 1024;

const headerSchema = z.object({
  format: z.literal(FORMAT),
  kind: z.enum(['fedavgm', 'fedadam', 'fedyogi', 'fedadagrad']),
  step: z.int().min(0),
  parameters: z.int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

/** What meta.json records about the saved state (`extra.serverOptimizer`). */
export const serverOptimizerRecordSchema = headerSchema.omit({ format: true });
export type ServerOptimizerRecord = z.output<typeof serverOptimizerRecordSchema>;

export function encodeServerOptimizerFile(state: ServerOptimizerState): { bytes: Uint8Array; record: ServerOptimizerRecord } {
  const binary = encodeServerOptimizerState(state);
  const record: ServerOptimizerRecord = { kind: state.kind, step: state.step, parameters: state.m.length, sha256: createHash('sha256').update(binary).digest('hex') };
  const header = JSON.stringify({ format: FORMAT, ...record });
  const head = Buffer.from(`${header.slice(0, -1)}${STATE_FIELD}`, 'utf8');
  const out = Buffer.allocUnsafe(head.length + 4 * Math.ceil(binary.length / 3) + 3);
  let at = head.copy(out, 0);
  for (let i = 0; i < binary.length; i += CHUNK_BYTES) {
    const chunk = Buffer.from(binary.buffer, binary.byteOffset + i, Math.min(CHUNK_BYTES, binary.length - i));
    at += out.write(chunk.toString('base64'), at, 'latin1');
  }
  at += out.write('"}\n', at, 'latin1');
  return { bytes: out.subarray(0, at), record };
}

export function decodeServerOptimizerFile(bytes: Uint8Array, what: string): { state: ServerOptimizerState; record: ServerOptimizerRecord } {
  const fail = (reason: string) => new PatchFedError('server-optimizer-state-corrupt', `${what}: ${reason}.`, { subject: what });
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = buf.indexOf(STATE_FIELD, 0, 'latin1');
  if (at <= 0) throw fail('not a PatchFed server optimiser state file');
  let header: z.output<typeof headerSchema>;
  try {
    header = headerSchema.parse(JSON.parse(`${buf.subarray(0, at).toString('utf8')}}`));
  } catch {
    throw fail('its header is not valid');
  }
  let end = buf.length;
  while (end > 0 && (buf[end - 1] === 0x0a || buf[end - 1] === 0x0d)) end--;
  if (end < at + STATE_FIELD.length + 2 || buf[end - 2] !== 0x22 || buf[end - 1] !== 0x7d) throw fail('it is truncated');
  const b64 = buf.subarray(at + STATE_FIELD.length, end - 2);
  const binary = Buffer.allocUnsafe(Math.floor((b64.length * 3) / 4));
  let written = 0;
  for (let i = 0; i < b64.length; i += CHUNK_CHARS) written += Buffer.from(b64.subarray(i, i + CHUNK_CHARS).toString('latin1'), 'base64').copy(binary, written);
  const decoded = binary.subarray(0, written);
  const sha256 = createHash('sha256').update(decoded).digest('hex');
  if (sha256 !== header.sha256) throw fail(`the state's sha256 is ${sha256.slice(0, 12)}…, its header says ${header.sha256.slice(0, 12)}…`);
  const state = decodeServerOptimizerState(decoded, what);
  if (state.kind !== header.kind || state.step !== header.step || state.m.length !== header.parameters) throw fail('the header does not describe the state');
  return { state, record: serverOptimizerRecordSchema.parse(header) };
}
