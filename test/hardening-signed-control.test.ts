/**
 * Issue 11, item 5 at the level of the signature itself (federation-faults shows the end to end:
 * a site refuses a task whose steps were rewritten in flight). Coordinator → site control
 * messages are signed over their type, the session and every field: an altered field, another
 * session (replay), another key (forgery) or another message type each fail with
 * 'control-bad-signature'. Milliseconds.
 */
import { describe, expect, it } from 'vitest';
import { generateKeyPairs } from '../shared/crypto/keys.ts';
import { encodeMessage, parseMessage, type Message } from '../shared/protocol/messages.ts';
import { signControl, verifyControl, type ControlBody } from '../shared/protocol/signed-control.ts';

const coordinator = generateKeyPairs();
const impostor = generateKeyPairs();
const session = 'a'.repeat(32);
const otherSession = 'b'.repeat(32);
const cancel: ControlBody<'round-cancel'> = { round: 3, code: 'round-closed', reason: 'Round 3 completed without this site.' };

/** What the site parses from the wire (encode → decode, as socket.io carries it). */
function wire<T extends 'round-cancel'>(type: T, m: Message<T>): Message<T> {
  return parseMessage(type, encodeMessage(type, m));
}

describe('signed control messages', () => {
  it('a round-cancel signed for this session verifies and yields its body', () => {
    const signed = wire('round-cancel', signControl('round-cancel', cancel, session, coordinator.signSecretKey));
    expect(verifyControl('round-cancel', signed, session, coordinator.signPublicKey)).toEqual(cancel);
  });

  it('refuses an altered field, a replay on another session, a forgery and a missing signature', () => {
    const signed = signControl('round-cancel', cancel, session, coordinator.signSecretKey);
    const refused = (m: Message<'round-cancel'>, s = session) => () => verifyControl('round-cancel', m, s, coordinator.signPublicKey);
    const err = { code: 'control-bad-signature' };
    expect(refused({ ...signed, round: 4 })).toThrow(expect.objectContaining(err));
    expect(refused({ ...signed, reason: `${cancel.reason} ` })).toThrow(expect.objectContaining(err));
    expect(refused(signed, otherSession)).toThrow(expect.objectContaining(err));
    expect(refused(signControl('round-cancel', cancel, session, impostor.signSecretKey))).toThrow(expect.objectContaining(err));
    expect(refused({ ...signed, signature: new Uint8Array(64) })).toThrow(/not signed by the pinned coordinator key for this session/);
  });

  it('binds the message type: the same fields signed as one type do not verify as another', () => {
    const signed = signControl('round-cancel', cancel, session, coordinator.signSecretKey);
    // Identical bytes, only the type differs: the type is part of what is signed.
    expect(() => verifyControl<'round-cancel' | 'experiment-complete'>('experiment-complete', signed, session, coordinator.signPublicKey)).toThrow(
      expect.objectContaining({ code: 'control-bad-signature' }),
    );
    expect(verifyControl<'round-cancel' | 'experiment-complete'>('round-cancel', signed, session, coordinator.signPublicKey)).toEqual(cancel);
  });
});
