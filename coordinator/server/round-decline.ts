/**
 * A selected site's `round-decline`: it cannot take part in this round attempt (its memory
 * budget fits no patch, it refused the checkpoint, its training failed) and says why, signed by
 * its key over the session. The round stops waiting for it (live-round.ts), and the reason is
 * an event on the dashboard, in the log and in simulate's live output — instead of a silent
 * wait for the deadline.
 */
import { safeParseMessage } from '../../shared/protocol/messages.ts';
import { verifySiteSigned } from '../../shared/protocol/site-signed.ts';
import type { AuthenticatedSite } from '../../shared/protocol/session.ts';
import type { EventHub } from './events.ts';
import type { LiveRound } from './live-round.ts';

export interface DeclineContext {
  live(): LiveRound | null;
  hub: EventHub;
}

/** Applies a site's round-decline event; throws PatchFedError for a malformed or forged one. */
export function handleRoundDecline(ctx: DeclineContext, site: AuthenticatedSite, payload: unknown): void {
  const m = safeParseMessage('round-decline', payload);
  if (!m.ok) throw m.error;
  const decline = verifySiteSigned('round-decline', m.data, site.sessionId, site.siteKeys.signPublicKey);
  const live = ctx.live();
  // A decline of an earlier attempt (or a round already closed) changes nothing: the site is
  // sent the current task again and answers that one.
  if (!live || live.closed || decline.round !== live.round || decline.attempt !== live.attempt) return;
  if (!live.isSelected(site.siteId) || live.isResolved(site.siteId)) return;
  live.decline(site.siteId, decline.code, decline.reason);
  ctx.hub.note(
    'round-declined',
    {
      round: live.round,
      attempt: live.attempt,
      siteId: site.siteId,
      code: decline.code,
      message: `Site '${site.siteId}' cannot take part in round ${live.round} (attempt ${live.attempt}): ${decline.reason} [${decline.code}]`,
    },
    'round-declined',
    'warn',
  );
}
