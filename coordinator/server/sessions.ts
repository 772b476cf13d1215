/**
 * Site connections: the challenge–response handshake against the enrolled keys and, once a site
 * is authenticated, the services it may use (checkpoint download, update upload, status / error /
 * site-info events). One session per site: a new authenticated connection replaces the old one.
 * What an unauthenticated connection may cost (slots, bytes, time) is the ConnectionGate's job;
 * this module tells it when a site has authenticated.
 */
import type { Server, Socket } from 'socket.io';
import { errorMessage } from '../../shared/errors.ts';
import { encodeMessage, safeParseMessage, type CoordinatorMessageType, type Message } from '../../shared/protocol/messages.ts';
import { serveCheckpoints } from '../../shared/protocol/checkpoint-transfer.ts';
import { acceptSiteHandshake, type AuthenticatedSite } from '../../shared/protocol/session.ts';
import { signControl, type ControlBody, type SignedControlType } from '../../shared/protocol/signed-control.ts';
import type { HandlerTransport } from '../../shared/protocol/transport.ts';
import type { StateDb } from '../store/index.ts';
import type { CheckpointService } from './checkpoint-service.ts';
import { clientKey, type ConnectionGate } from './connection-gate.ts';
import type { EventHub } from './events.ts';
import type { LiveRound } from './live-round.ts';
import { handleRoundDecline } from './round-decline.ts';
import type { Log } from './log.ts';
import type { CoordinatorSetup } from './setup.ts';
import { SocketRouter } from './socket-router.ts';
import type { UploadService } from './uploads.ts';

export interface SessionContext {
  setup: CoordinatorSetup;
  db: StateDb;
  hub: EventHub;
  log: Log;
  uploads: UploadService;
  checkpoints: CheckpointService;
  experimentMessage: Message<'experiment'>;
  gate: ConnectionGate;
  live(): LiveRound | null;
  /** A site's signed final-evaluation (cross-site validation, cross-site.ts). */
  onFinalEvaluation?(site: AuthenticatedSite, payload: unknown): void;
  /** After authentication and the experiment message (e.g. to send the current task). */
  onSiteOnline(siteId: string): void;
  onSiteOffline(siteId: string): void;
}

interface SiteSession {
  siteId: string;
  sessionId: string;
  socket: Socket;
  router: SocketRouter;
  /** The signed experiment description has been pushed on this session (see introduce()). */
  introduced: boolean;
}

/** Live facts a site reported that the DB has no column for. */
export interface SiteExtras {
  gpu: boolean;
}

export class SiteSessions {
  private readonly sessions = new Map<string, SiteSession>();
  readonly extras = new Map<string, SiteExtras>();

  constructor(
    private readonly io: Server,
    private readonly ctx: SessionContext,
  ) {
    io.on('connection', (socket) => this.accept(socket));
  }

  /** Ids of the sites with an authenticated connection. */
  onlineIds(): string[] {
    return [...this.sessions.keys()].sort();
  }

  isOnline(siteId: string): boolean {
    return this.sessions.has(siteId);
  }

  /** Pushes a validated coordinator message to a site; false if it is offline. */
  send<T extends CoordinatorMessageType>(siteId: string, type: T, data: Message<T>): boolean {
    const s = this.sessions.get(siteId);
    if (!s) return false;
    if (type !== 'experiment') this.introduce(s);
    s.socket.emit(type, encodeMessage(type, data));
    return true;
  }

  /** Signs a control message for the site's current session and pushes it; false if it is offline. */
  sendSigned<T extends SignedControlType>(siteId: string, type: T, body: ControlBody<T>): boolean {
    const s = this.sessions.get(siteId);
    if (!s) return false;
    this.introduce(s);
    const signed = signControl(type, body, s.sessionId, this.ctx.setup.keys.signSecretKey);
    s.socket.emit(type, encodeMessage(type, signed));
    return true;
  }

  /**
   * Pushes the experiment description once per session, before anything else: a site refuses
   * round tasks until it has verified it. A round can start (another site's online callback) in
   * the gap between this session's registration and its own online callback, so every push
   * introduces the session first rather than relying on that callback's order.
   */
  private introduce(s: SiteSession): void {
    if (s.introduced) return;
    s.introduced = true;
    s.socket.emit('experiment', encodeMessage('experiment', this.ctx.experimentMessage));
  }

  disconnectAll(): void {
    for (const s of this.sessions.values()) s.socket.disconnect(true);
  }

  private accept(socket: Socket): void {
    const { ctx } = this;
    const { config, keys, sites } = ctx.setup;
    const client = clientKey(socket.handshake.address);
    const router = new SocketRouter(socket, {
      maxMessagesPerSecond: config.limits.maxMessagesPerSecond,
      log: ctx.log,
      onAbuse: (reason) => ctx.hub.noteRepeated('abuse', 'connection-refused', { reason: 'abuse', message: `Closed connection ${socket.id} from ${client}: ${reason}.` }, null, 'warn', client),
    });
    let session: SiteSession | null = null;
    const detach: (() => void)[] = [];

    detach.push(
      acceptSiteHandshake(router, {
        coordinatorKeys: keys,
        enrolledKeys: (id) => sites.get(id)?.keys,
        onRejected: (error) => {
          // Summarised per code (and per site when it is an enrolled one): an unknown site id is
          // whatever the client chose, so it is a detail of the summary, not a key of its own.
          const enrolled = error.subject !== undefined && sites.has(error.subject);
          const key = enrolled ? `${error.code}|${error.subject}` : error.code;
          const message = `Refused ${error.subject ? `site '${error.subject.slice(0, 64)}'` : 'a connection'} from ${client}: ${error.message}`;
          ctx.hub.noteRepeated(key, 'auth-failed', { siteId: error.subject, code: error.code, message }, 'enrol-refused', 'warn', client);
          router.close(`authentication failed (${error.code})`, false);
        },
        onAuthenticated: (site) => {
          ctx.gate.siteAuthenticated(socket.conn);
          router.markAuthenticated();
          session = { siteId: site.siteId, sessionId: site.sessionId, socket, router, introduced: false };
          const previous = this.sessions.get(site.siteId);
          this.sessions.set(site.siteId, session);
          if (previous) {
            ctx.log('info', 'site reconnected; closing its previous connection', { siteId: site.siteId });
            previous.socket.disconnect(true);
          }
          detach.push(ctx.uploads.attach(router, { siteId: site.siteId, siteKeys: site.siteKeys }));
          detach.push(serveCheckpoints(this.countingDownloads(router), (e, v) => ctx.checkpoints.source(e, v), config.limits.chunkBytes));
          detach.push(router.onEvent('status', (p) => this.onStatus(site.siteId, p)));
          detach.push(router.onEvent('error', (p) => this.onSiteError(site.siteId, p)));
          detach.push(router.onEvent('site-info', (p) => this.onSiteInfo(site.siteId, p)));
          // round-decline: the site cannot take part in the open round, and says why (round-decline.ts).
          detach.push(router.onEvent('round-decline', (p) => handleRoundDecline({ live: () => ctx.live(), hub: ctx.hub }, site, p)));
          detach.push(router.onEvent('final-evaluation', (p) => ctx.onFinalEvaluation?.(site, p)));
          try {
            ctx.db.setSiteOnline(site.siteId, true);
          } catch (e) {
            ctx.log('error', 'could not mark site online', { siteId: site.siteId, error: errorMessage(e) });
          }
          ctx.hub.note('site-online', { siteId: site.siteId, message: `Site '${site.siteId}' connected and authenticated (session ${site.sessionId.slice(0, 8)}).` }, 'site-online');
          // After the auth-ok acknowledgement has gone out.
          setImmediate(() => {
            if (this.sessions.get(site.siteId) !== session) return;
            this.introduce(session);
            ctx.onSiteOnline(site.siteId);
          });
        },
      }),
    );

    socket.on('disconnect', (reason: string) => {
      for (const off of detach) off();
      if (session && this.sessions.get(session.siteId) === session) {
        this.sessions.delete(session.siteId);
        try {
          ctx.db.setSiteOnline(session.siteId, false);
        } catch (e) {
          ctx.log('error', 'could not mark site offline', { siteId: session.siteId, error: errorMessage(e) });
        }
        ctx.hub.note('site-offline', { siteId: session.siteId, message: `Site '${session.siteId}' disconnected (${reason}).` }, 'site-offline');
        ctx.onSiteOffline(session.siteId);
      }
    });
  }

  /** Counts checkpoint bytes served in the live round (dashboard: bytes moved). */
  private countingDownloads(router: HandlerTransport): HandlerTransport {
    return {
      handle: (type, handler) =>
        router.handle(type, async (payload) => {
          const reply = await handler(payload);
          const live = this.ctx.live();
          if (live && reply.type === 'checkpoint-chunk') live.bytesDown += (reply.payload as { data: Uint8Array }).data.length;
          return reply;
        }),
    };
  }

  private onStatus(siteId: string, payload: unknown): void {
    const m = safeParseMessage('status', payload);
    if (!m.ok) throw m.error;
    const live = this.ctx.live();
    const site = live?.sites.get(siteId);
    if (!live || live.closed || !site || m.data.round !== live.round || live.isResolved(siteId)) return;
    live.noteStatus(siteId, m.data);
    this.ctx.hub.note(
      'site-status',
      { siteId, round: m.data.round, stepsDone: m.data.stepsDone, stepsTotal: m.data.stepsTotal, phase: m.data.phase, message: `Site '${siteId}': ${m.data.phase ?? 'working'} ${m.data.stepsDone}/${m.data.stepsTotal}.` },
      null,
      'debug',
    );
  }

  private onSiteError(siteId: string, payload: unknown): void {
    const m = safeParseMessage('error', payload);
    if (!m.ok) throw m.error;
    this.ctx.hub.note('site-error', { siteId, code: m.data.code, message: `Site '${siteId}' reported ${m.data.code}: ${m.data.message}` }, null, 'warn');
  }

  private onSiteInfo(siteId: string, payload: unknown): void {
    const m = safeParseMessage('site-info', payload);
    if (!m.ok) throw m.error;
    const info = m.data;
    const { db } = this.ctx;
    const known = db.getSite(siteId);
    if (!known) return;
    db.upsertSite({
      id: siteId,
      fingerprint: known.fingerprint,
      backend: info.backend,
      memoryBudgetBytes: info.memoryBudgetMB !== undefined ? Math.max(1, Math.round(info.memoryBudgetMB * 1024 * 1024)) : undefined,
      plannedPatch: info.patch,
      plannedBatch: info.batch,
    });
    if (info.gpu !== undefined) this.extras.set(siteId, { gpu: info.gpu });
    this.ctx.hub.changed();
  }
}
