/**
 * `experiment.json`, published in every checkpoint directory: the experiment description the
 * coordinator signed (the same `experiment` message sites receive), so a checkpoint is
 * self-describing — model architecture, labels, modalities, strategy — and anyone holding the
 * coordinator's public key can check that description before using the weights.
 */
import nacl from 'tweetnacl';
import { PatchFedError } from '../errors.ts';
import { encodeMessage, experimentSigningBytes, safeParseMessage, type ExperimentDescription, type Message } from './messages.ts';

export const EXPERIMENT_FILE = 'experiment.json';

export function encodeExperimentFile(message: Message<'experiment'>): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(encodeMessage('experiment', message), null, 2)}\n`);
}

/**
 * Parses an experiment.json; with `coordinatorSignPublicKey`, also checks its signature (throws
 * 'experiment-bad-signature'). `source` names the file in errors.
 */
export function readExperimentFile(bytes: Uint8Array, source: string, coordinatorSignPublicKey?: Uint8Array): { description: ExperimentDescription; verified: boolean } {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new PatchFedError('experiment-file-invalid', `${source} is not valid JSON.`, { subject: source });
  }
  const parsed = safeParseMessage('experiment', raw);
  if (!parsed.ok) throw new PatchFedError('experiment-file-invalid', `${source}: ${parsed.error.message}`, { subject: source });
  const { description, signature } = parsed.data;
  if (coordinatorSignPublicKey) {
    if (!nacl.sign.detached.verify(experimentSigningBytes(description), signature, coordinatorSignPublicKey)) {
      throw new PatchFedError('experiment-bad-signature', `${source} is not signed by the given coordinator key.`, { subject: source });
    }
  }
  return { description, verified: coordinatorSignPublicKey !== undefined };
}
