/**
 * An honest site's answer to the coordinator's unmasking request (Bonawitz et al. 2017, §4 round
 * "Unmasking"): for each peer the coordinator says dropped, the share of that peer's mask secret
 * key (so the coordinator can remove the pairwise masks survivors added for it); for each peer it
 * says survived, the share of that peer's self-mask seed (so it can remove the self-mask).
 *
 * The security of the whole scheme rests on never giving out both shares of the same peer: with t
 * self-mask shares *and* t key shares of u, the coordinator removes every mask from y_u and reads
 * u's update. So the policy refuses a request that asks for both for one peer — in the same request
 * or across requests of the round (the state remembers what was revealed) — as well as requests
 * that cannot come from an honest coordinator: this site listed as dropped although it sent its
 * masked input, peers it holds no shares of, or fewer than t survivors (Bonawitz's |U3| ≥ t check:
 * the sum must cover at least t inputs). Refusals are values, not exceptions: the caller reports
 * them and aborts its part of the round.
 *
 * Limit: one site cannot see what the coordinator told *other* sites. A coordinator that tells some
 * sites "u dropped" and others "u survived" is caught only by the consistency round of Bonawitz's
 * actively secure variant (every survivor signs the survivor list U3 and checks t signatures before
 * answering); that belongs to the signed protocol messages, not to this function.
 */
import type { SharePair } from './share-envelope.ts';
import type { Share } from './shamir.ts';

export type RevealedKind = 'self-mask' | 'pairwise-key';

export interface RevealState {
  readonly siteId: string;
  readonly threshold: number;
  /** Whether this site sent its own masked input; only such sites take part in unmasking. */
  readonly submitted: boolean;
  /** Shares this site holds, by owner: the peers whose envelopes it opened, and itself. */
  readonly held: ReadonlyMap<string, SharePair>;
  /** What was already revealed for each owner this round. */
  readonly revealed: ReadonlyMap<string, RevealedKind>;
}

export interface RevealedShare {
  owner: string;
  share: Share;
}

export type RevealRefusal =
  | 'not-submitted'
  | 'malformed-request'
  | 'both-shares-requested'
  | 'self-declared-dropped'
  | 'self-not-listed'
  | 'unknown-peer'
  | 'too-few-survivors'
  | 'conflicts-with-earlier-reveal';

export type RevealDecision =
  | { ok: true; selfMaskShares: RevealedShare[]; keyShares: RevealedShare[]; state: RevealState }
  | { ok: false; refusal: RevealRefusal; reason: string };

export function initialRevealState(siteId: string, threshold: number, held: ReadonlyMap<string, SharePair>, submitted: boolean): RevealState {
  return { siteId, threshold, submitted, held, revealed: new Map() };
}

export function sharesToReveal(requestedDropped: readonly string[], requestedSurvivors: readonly string[], state: RevealState): RevealDecision {
  const refuse = (refusal: RevealRefusal, reason: string): RevealDecision => ({ ok: false, refusal, reason: `site '${state.siteId}' refuses to reveal shares: ${reason}` });
  if (!state.submitted) return refuse('not-submitted', 'it did not send its masked input this round');
  const dropped = new Set(requestedDropped);
  const survivors = new Set(requestedSurvivors);
  if (dropped.size !== requestedDropped.length || survivors.size !== requestedSurvivors.length) {
    return refuse('malformed-request', 'a site is listed twice in the request');
  }
  for (const id of dropped) {
    if (survivors.has(id)) return refuse('both-shares-requested', `the request asks for both the self-mask share and the key share of '${id}'`);
  }
  if (dropped.has(state.siteId)) return refuse('self-declared-dropped', 'the request lists this site as dropped although it sent its masked input');
  if (!survivors.has(state.siteId)) return refuse('self-not-listed', 'the request does not list this site among the survivors although it sent its masked input');
  for (const id of [...dropped, ...survivors]) {
    if (!state.held.has(id)) return refuse('unknown-peer', `it holds no shares of '${id}'`);
  }
  if (survivors.size < state.threshold) {
    return refuse('too-few-survivors', `${survivors.size} survivor(s) listed, the threshold is ${state.threshold}`);
  }
  for (const id of dropped) {
    if (state.revealed.get(id) === 'self-mask') return refuse('conflicts-with-earlier-reveal', `the self-mask share of '${id}' was already revealed, so its key share never will be`);
  }
  for (const id of survivors) {
    if (state.revealed.get(id) === 'pairwise-key') return refuse('conflicts-with-earlier-reveal', `the key share of '${id}' was already revealed, so its self-mask share never will be`);
  }
  const revealed = new Map(state.revealed);
  const keyShares: RevealedShare[] = [];
  const selfMaskShares: RevealedShare[] = [];
  for (const id of [...dropped].sort()) {
    const pair = state.held.get(id);
    if (!pair) continue;
    keyShares.push({ owner: id, share: pair.keyShare });
    revealed.set(id, 'pairwise-key');
  }
  for (const id of [...survivors].sort()) {
    const pair = state.held.get(id);
    if (!pair) continue;
    selfMaskShares.push({ owner: id, share: pair.selfMaskShare });
    revealed.set(id, 'self-mask');
  }
  return { ok: true, selfMaskShares, keyShares, state: { ...state, revealed } };
}
