/**
 * mountDashboard: the coordinator's read-only live dashboard.
 *
 * Routes (all registered on `app`):
 *   GET  /                 the page (token required; `?token=` once sets the cookie and redirects)
 *   GET  /login, POST /login, POST /logout
 *   GET  /api/*            token required for every /api path (401 JSON otherwise), including
 *                          ones mounted later by the coordinator
 *   GET  /api/snapshot     DashboardPayload as JSON
 *   GET  /api/checkpoints/:version/download
 *   GET  /assets/...       public: the page's JS/CSS and vendor libraries (code, never data)
 * Socket.io namespace /dashboard: refuses unauthorised handshakes; pushes 'snapshot' (a JSON
 * string of DashboardPayload) and 'event' (a DashboardEvent). Clients cannot send anything that
 * is acted upon: no handler listens.
 *
 * Every token attempt (login form, `?token=` link, Bearer header, socket handshake) goes through
 * token-gate.ts: the per-address LoginThrottle (429 + Retry-After once an address has failed too often) and
 * failed ones are logged, one line per address at first and then one summary per interval.
 * Under TLS every response carries Strict-Transport-Security.
 */
import { gzipSync } from 'node:zlib';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Server as SocketIoServer } from 'socket.io';
import { clientKey } from '../server/connection-gate.ts';
import { DashboardAuth, originMatchesHost } from './auth.ts';
import { escapeHtml, loadStaticAssets, readPage } from './assets.ts';
import { serializePayload } from './payload.ts';
import { TokenGate, requestClient, throttledMessage, type TokenVerdict } from './token-gate.ts';
import type { DashboardEvent, DashboardHandle, MountDashboardOptions } from './types.ts';

export const DASHBOARD_NAMESPACE = '/dashboard';
const DEFAULT_PUSH_INTERVAL_MS = 250;
/** One year, the usual HSTS lifetime; no includeSubDomains: the coordinator does not own its siblings. */
const HSTS = 'max-age=31536000';

const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

function pageHeaders(res: Response): void {
  res.set({
    'Content-Security-Policy': PAGE_CSP,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    'Cache-Control': 'no-store',
  });
}

export function mountDashboard(app: express.Express, io: SocketIoServer, opts: MountDashboardOptions): DashboardHandle {
  const onError = opts.onError ?? ((e: unknown) => console.error('dashboard: snapshot push failed:', e));
  const log = opts.log ?? ((level, msg) => (level === 'warn' || level === 'error' ? console.warn(msg) : undefined));
  const gate = new TokenGate(new DashboardAuth(opts.token), log, opts);
  // Transport security first: every response below carries HSTS under TLS.
  app.use((req, res, next) => {
    if (req.secure) res.set('Strict-Transport-Security', HSTS);
    next();
  });
  mountAssets(app);
  mountPageAndLogin(app, gate);
  app.use('/api', dashboardApi(gate, opts, onError));
  const live = liveNamespace(io, gate, opts, onError);
  return {
    publishSnapshot: () => live.publishSnapshot(),
    publishEvent: (event: DashboardEvent) => live.publishEvent(event),
    close(): void {
      live.close();
      gate.close();
    },
  };
}

const tooMany = (res: Response, retryAfter: number): Response => res.status(429).set({ 'Retry-After': String(retryAfter), 'Cache-Control': 'no-store' });

/**
 * Public assets, from memory, gzip when accepted; `no-cache` + ETag: a reload costs only 304s,
 * and a coordinator restarted with new code is never shadowed by a stale cached file.
 */
function mountAssets(app: express.Express): void {
  const assets = loadStaticAssets();
  app.get(/^\/assets\/(.+)$/, (req, res, next) => {
    const asset = assets.get(String(req.params[0]));
    if (!asset) return next();
    res.set({ 'Cache-Control': 'no-cache', ETag: asset.etag, Vary: 'Accept-Encoding', 'X-Content-Type-Options': 'nosniff', 'Content-Type': asset.contentType });
    if (req.headers['if-none-match'] === asset.etag) return void res.status(304).end();
    const gzip = asset.gzip && req.acceptsEncodings('gzip') === 'gzip';
    if (gzip) res.set('Content-Encoding', 'gzip');
    res.end(gzip ? asset.gzip : asset.body);
  });
}

/** The page (token required; `?token=` once sets the cookie and redirects), login and logout. */
function mountPageAndLogin(app: express.Express, gate: TokenGate): void {
  const { auth } = gate;
  const indexHtml = readPage('index.html');
  const loginTemplate = readPage('login.html');
  const sendLogin = (res: Response, status: number, message: string | null): void => {
    pageHeaders(res);
    res.status(status).type('html').send(loginTemplate.replace('<!--MESSAGE-->', message ? `<p class="login-error" role="alert">${escapeHtml(message)}</p>` : ''));
  };

  app.get('/', (req, res) => {
    const linkToken = req.query.token;
    if (linkToken !== undefined) {
      const verdict = gate.tryToken(requestClient(req), linkToken, 'link');
      if (!verdict.ok && verdict.retryAfter > 0) return sendLogin(tooMany(res, verdict.retryAfter), 429, throttledMessage(verdict.retryAfter));
      if (!verdict.ok) return sendLogin(res, 401, 'The token in that link is not valid.');
      res.set('Set-Cookie', auth.sessionCookie(req.secure));
      res.set('Referrer-Policy', 'no-referrer');
      return res.redirect(303, withoutTokenParam(req.originalUrl));
    }
    const verdict = gate.authorise(req);
    if (verdict && !verdict.ok && verdict.retryAfter > 0) return sendLogin(tooMany(res, verdict.retryAfter), 429, throttledMessage(verdict.retryAfter));
    if (!verdict?.ok) return sendLogin(res, 401, null);
    pageHeaders(res);
    res.type('html').send(indexHtml);
  });

  app.get('/login', (req, res) => {
    if (auth.headersAuthorised(req.headers)) return res.redirect(303, '/');
    sendLogin(res, 200, null);
  });

  app.post('/login', express.urlencoded({ extended: false, limit: '4kb', parameterLimit: 4 }), (req, res) => {
    const token = (req.body as Record<string, unknown> | undefined)?.token;
    const verdict = gate.tryToken(requestClient(req), token, 'login form');
    if (!verdict.ok && verdict.retryAfter > 0) return sendLogin(tooMany(res, verdict.retryAfter), 429, throttledMessage(verdict.retryAfter));
    if (!verdict.ok) return sendLogin(res, 401, 'That token is not valid.');
    res.set('Set-Cookie', auth.sessionCookie(req.secure));
    res.redirect(303, '/');
  });

  app.post('/logout', (_req, res) => {
    res.set('Set-Cookie', DashboardAuth.clearedCookie());
    res.redirect(303, '/login');
  });
}

/** The /api router: every path needs the token (including ones the coordinator mounts later). */
function dashboardApi(gate: TokenGate, opts: MountDashboardOptions, onError: (e: unknown) => void): express.Router {
  const api = express.Router();
  api.use((req, res, next) => {
    const verdict = gate.authorise(req);
    if (verdict?.ok) return next();
    if (verdict && verdict.retryAfter > 0) return void tooMany(res, verdict.retryAfter).json({ error: 'too-many-attempts', message: throttledMessage(verdict.retryAfter) });
    res.status(401).set({ 'WWW-Authenticate': 'Bearer realm="patchfed-dashboard"', 'Cache-Control': 'no-store' });
    res.json({ error: 'unauthorized', message: 'dashboard token required (log in at /login)' });
  });
  api.get('/snapshot', (req, res) => {
    const body = serializePayload(opts.snapshot());
    res.set({ 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', Vary: 'Accept-Encoding' });
    res.type('application/json');
    // A long experiment's history is a few hundred KiB of repetitive JSON; gzip cuts it ~4x.
    if (body.length > 8192 && req.acceptsEncodings('gzip') === 'gzip') {
      res.set('Content-Encoding', 'gzip').send(gzipSync(body));
    } else {
      res.send(body);
    }
  });
  api.get('/checkpoints/:version/download', (req, res) => {
    const raw = String(req.params.version);
    const version = /^[0-9]{1,9}$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(version) || version < 1) {
      return res.status(400).json({ error: 'bad-version', message: `checkpoint version "${raw.slice(0, 32)}" is not a positive integer` });
    }
    const artifact = opts.downloadCheckpoint(version);
    if (!artifact) return res.status(404).json({ error: 'not-found', message: `checkpoint version ${version} does not exist` });
    res.set({
      'Content-Type': 'application/octet-stream',
      'Content-Disposition': `attachment; filename="${safeFileName(artifact.fileName, version)}"`,
      'Content-Length': String(artifact.bytes.byteLength),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(Buffer.from(artifact.bytes.buffer, artifact.bytes.byteOffset, artifact.bytes.byteLength));
  });
  // Errors inside dashboard API handlers (e.g. the provider throwing) must not leak stack traces.
  api.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    onError(err);
    if (!res.headersSent) res.status(500).json({ error: 'internal', message: 'dashboard data unavailable' });
  });
  return api;
}

/**
 * The live namespace: refuses unauthorised handshakes; sends a fresh snapshot on connect and
 * pushes at most one snapshot per `minPushIntervalMs` (a burst of changes costs one push).
 */
function liveNamespace(io: SocketIoServer, gate: TokenGate, opts: MountDashboardOptions, onError: (e: unknown) => void): DashboardHandle {
  const interval = Math.max(0, opts.minPushIntervalMs ?? DEFAULT_PUSH_INTERVAL_MS);
  const nsp = io.of(DASHBOARD_NAMESPACE);
  nsp.use((socket, next) => {
    const headers = socket.handshake.headers;
    if (!originMatchesHost(headers)) return next(new Error('unauthorized'));
    const handshakeToken = (socket.handshake.auth as Record<string, unknown> | undefined)?.token;
    const bearer = DashboardAuth.bearerAttempt(headers);
    let verdict: TokenVerdict = { ok: false, retryAfter: 0 };
    if (gate.auth.headersAuthorised({ cookie: headers.cookie })) verdict = { ok: true };
    else if (handshakeToken !== undefined || bearer !== undefined) verdict = gate.tryToken(clientKey(socket.handshake.address), handshakeToken ?? bearer, 'live socket');
    if (!verdict.ok) return next(new Error(verdict.retryAfter > 0 ? 'too many failed logins; retry later' : 'unauthorized'));
    if (opts.admitViewer && !opts.admitViewer(socket.conn)) return next(new Error('the dashboard is at its connection limit; retry later'));
    next();
  });
  nsp.on('connection', (socket) => {
    // Fresh state for a (re)connecting page, which may have missed pushes while away.
    try {
      socket.emit('snapshot', serializePayload(opts.snapshot()));
    } catch (e) {
      onError(e);
    }
  });

  let lastPush = -Infinity;
  let timer: NodeJS.Timeout | null = null;
  const push = (): void => {
    lastPush = Date.now();
    if (nsp.sockets.size === 0) return;
    try {
      nsp.emit('snapshot', serializePayload(opts.snapshot()));
    } catch (e) {
      onError(e);
    }
  };
  return {
    publishSnapshot(): void {
      if (timer) return; // a push is already scheduled and will read the newest state
      const wait = lastPush + interval - Date.now();
      if (wait <= 0) return push();
      timer = setTimeout(() => {
        timer = null;
        push();
      }, wait);
      timer.unref();
    },
    publishEvent(event: DashboardEvent): void {
      nsp.emit('event', event);
    },
    close(): void {
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}

function withoutTokenParam(originalUrl: string): string {
  const url = new URL(originalUrl, 'http://dashboard.invalid');
  url.searchParams.delete('token');
  return url.pathname + url.search;
}

/** Content-Disposition filename: plain ASCII only, so no header injection or path tricks. */
function safeFileName(name: string, version: number): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '');
  return cleaned.length > 0 && cleaned.length <= 128 ? cleaned : `checkpoint-v${version}.bin`;
}
