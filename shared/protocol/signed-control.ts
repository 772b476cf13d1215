/**
 * Coordinator → site messages that change what a site does (a round task, a cancellation, the
 * end of the experiment) are signed by the coordinator over the session they are sent on, so an
 * on-path attacker on a plaintext deployment can neither forge nor alter them (say, rewrite the
 * steps of a task), nor replay one from another session. Sites take training parameters only
 * from the signed experiment description and from signed tasks.
 *
 * Signed bytes: transcript("patchfed-<type>-v2", sessionId, canonicalJson(message without signature)).
 */
import nacl from 'tweetnacl';
import { PatchFedError } from '../errors.ts';
import { canonicalJson, transcript } from '../crypto/encoding.ts';
import { SIGNATURE_BYTES } from '../crypto/seal.ts';
import type { Message } from './messages.ts';

export const SIGNED_CONTROL_TYPES = ['round-task', 'round-cancel', 'experiment-complete', 'secagg-roster', 'secagg-envelopes', 'secagg-unmask'] as const;
export type SignedControlType = (typeof SIGNED_CONTROL_TYPES)[number];
export type ControlBody<T extends SignedControlType> = Omit<Message<T>, 'signature'>;

function signingBytes(type: SignedControlType, sessionId: string, body: object): Uint8Array {
  return transcript(`patchfed-${type}-v2`, sessionId, canonicalJson(body));
}

function withoutSignature<T extends SignedControlType>(message: Message<T>): ControlBody<T> {
  const { signature: _signature, ...body } = message;
  return body as ControlBody<T>;
}

export function signControl<T extends SignedControlType>(type: T, body: ControlBody<T>, sessionId: string, coordinatorSignSecretKey: Uint8Array): Message<T> {
  const signature = nacl.sign.detached(signingBytes(type, sessionId, body), coordinatorSignSecretKey);
  return { ...body, signature } as Message<T>;
}

/** Throws 'control-bad-signature' unless `message` was signed by the pinned key for this session. */
export function verifyControl<T extends SignedControlType>(type: T, message: Message<T>, sessionId: string, coordinatorSignPublicKey: Uint8Array): ControlBody<T> {
  const body = withoutSignature(message);
  const signature = message.signature;
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_BYTES || !nacl.sign.detached.verify(signingBytes(type, sessionId, body), signature, coordinatorSignPublicKey)) {
    throw new PatchFedError('control-bad-signature', `'${type}' is not signed by the pinned coordinator key for this session (forged, altered or replayed); ignoring it.`, { subject: type });
  }
  return body;
}
