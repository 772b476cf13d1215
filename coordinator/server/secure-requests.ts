/**
 * The coordinator's handlers of a site's secure-aggregation requests (secagg-keys, secagg-shares,
 * secagg-reveal): schema, then the site's signature over experiment, site, round and attempt
 * (shared/secagg/wire-signing.ts), then the open round's SecureRound. Registered on every
 * authenticated connection beside the upload handlers; refusals are 'error' replies.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { PublicKeys } from '../../shared/crypto/keys.ts';
import { makeReply, safeParseMessage, type Message } from '../../shared/protocol/messages.ts';
import type { HandlerTransport } from '../../shared/protocol/transport.ts';
import { SECAGG_SITE_REQUESTS, verifySecAggRequest, type SecAggSiteRequest } from '../../shared/secagg/wire-signing.ts';
import type { LiveRound } from './live-round.ts';

const STEP = { 'secagg-keys': 'keys', 'secagg-shares': 'shares', 'secagg-reveal': 'reveal' } as const;

export function attachSecAggHandlers(router: HandlerTransport, peer: { siteId: string; siteKeys: PublicKeys }, live: () => LiveRound | null): () => void {
  const detach = SECAGG_SITE_REQUESTS.map((type) => router.handle(type, (payload) => handle(type, payload, peer, live())));
  return () => detach.forEach((d) => d());
}

function handle(type: SecAggSiteRequest, payload: unknown, peer: { siteId: string; siteKeys: PublicKeys }, live: LiveRound | null) {
  const { siteId } = peer;
  const secure = live?.secure;
  if (!live || !secure) throw new PatchFedError('no-secure-round', `No secure-aggregation round is open for site '${siteId}'.`, { subject: siteId });
  const who = { experimentId: live.record.experimentId, siteId };
  const key = peer.siteKeys.signPublicKey;
  switch (type) {
    case 'secagg-keys': {
      const body = verifySecAggRequest(type, current(type, payload, live, siteId), who, key);
      secure.onKeys(siteId, body);
      break;
    }
    case 'secagg-shares': {
      const body = verifySecAggRequest(type, current(type, payload, live, siteId), who, key);
      secure.onShares(siteId, body.envelopes);
      break;
    }
    case 'secagg-reveal': {
      const body = verifySecAggRequest(type, current(type, payload, live, siteId), who, key);
      secure.onReveal(siteId, body);
      break;
    }
  }
  return makeReply('secagg-ack', { round: live.round, attempt: live.attempt, step: STEP[type] });
}

/** The parsed request, if it belongs to the open round attempt and a site selected for it. */
function current<T extends SecAggSiteRequest>(type: T, payload: unknown, live: LiveRound, siteId: string): Message<T> {
  const parsed = safeParseMessage(type, payload);
  if (!parsed.ok) throw parsed.error;
  const m = parsed.data;
  if (m.round !== live.round || m.attempt !== live.attempt) {
    throw new PatchFedError('stale-update', `'${type}' from site '${siteId}' is for round ${m.round} attempt ${m.attempt}; round ${live.round} attempt ${live.attempt} is open.`, { subject: siteId });
  }
  if (!live.isSelected(siteId)) throw new PatchFedError('not-selected', `Site '${siteId}' is not selected for round ${live.round}.`, { subject: siteId });
  return m;
}
