import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io as connect, type Socket } from 'socket.io-client';
import { constantTimeEqual, DashboardAuth, parseCookies } from '../coordinator/dashboard/auth.ts';
import { MAX_DASHBOARD_EVENTS, serializePayload } from '../coordinator/dashboard/payload.ts';
import { makeRound, makeSnapshot, siteId, startDashboardServer, TEST_TOKEN, type TestServer } from './dashboard-fixtures.ts';

function once<T = unknown>(socket: Socket, event: string): Promise<T> {
  return new Promise((resolve) => socket.once(event, resolve));
}

function cookieFrom(res: Response): string {
  const set = res.headers.get('set-cookie') ?? '';
  return set.split(';')[0] ?? '';
}

describe('dashboard auth helpers', () => {
  it('compares tokens by content only and refuses weak tokens', () => {
    expect(constantTimeEqual('a'.repeat(20), 'a'.repeat(20))).toBe(true);
    expect(constantTimeEqual('a'.repeat(20), 'a'.repeat(19))).toBe(false);
    expect(constantTimeEqual('a'.repeat(20), `${'a'.repeat(19)}b`)).toBe(false);
    expect(() => new DashboardAuth('short')).toThrow(/too easy to guess/);
    const auth = new DashboardAuth(TEST_TOKEN);
    expect(auth.sessionValue()).not.toContain(TEST_TOKEN);
    expect(auth.headersAuthorised({ cookie: `x=1; patchfed_dashboard=${auth.sessionValue()}` })).toBe(true);
    expect(auth.headersAuthorised({ cookie: `patchfed_dashboard=${TEST_TOKEN}` })).toBe(false);
    expect(auth.headersAuthorised({ authorization: `Bearer ${TEST_TOKEN}` })).toBe(true);
    expect(auth.headersAuthorised({ authorization: `Bearer ${TEST_TOKEN}x` })).toBe(false);
    expect(parseCookies('a=1; b="2"; a=3')).toEqual({ a: '1', b: '2' });
  });
});

describe('dashboard payload', () => {
  it('stays bounded for 32 sites and 100 rounds and caps the event log', () => {
    const snap = makeSnapshot({ sites: 32, rounds: 100, events: 800 });
    const json = serializePayload(snap, new Date('2025-03-01T12:00:00Z'));
    const payload = JSON.parse(json);
    console.log(`dashboard payload, 32 sites x 100 rounds: ${(json.length / 1024).toFixed(0)} KiB`);
    expect(json.length).toBeLessThan(400 * 1024);
    expect(payload.rounds).toHaveLength(100);
    expect(payload.sites).toHaveLength(32);
    expect(payload.events).toHaveLength(MAX_DASHBOARD_EVENTS);
    // the newest events are kept
    expect(payload.events.at(-1)).toEqual(snap.events.at(-1));
    expect(payload.serverTime).toBe('2025-03-01T12:00:00.000Z');
    const d = snap.rounds[41]!.globalDice.edema as number;
    expect(payload.rounds[41].globalDice.edema).toBeCloseTo(d, 4);
    expect(String(payload.rounds[41].globalDice.edema).replace(/^0\./, '').length).toBeLessThanOrEqual(5);
    expect(payload.rounds[41].bytesMoved).toBe(snap.rounds[41]!.bytesMoved);
  });
});

describe('dashboard server', () => {
  let srv: TestServer;
  const sockets: Socket[] = [];
  const open = (opts: Parameters<typeof connect>[1] = {}): Socket => {
    const s = connect(`${srv.url}/dashboard`, { transports: ['websocket'], reconnection: false, forceNew: true, ...opts });
    sockets.push(s);
    return s;
  };

  beforeAll(async () => {
    srv = await startDashboardServer(makeSnapshot({ sites: 2, rounds: 3 }), { minPushIntervalMs: 0 });
  });
  afterAll(async () => {
    for (const s of sockets) s.close();
    await srv.close();
  });

  it('answers 401 without the token on the page, the API and the download route', async () => {
    for (const path of ['/', '/api/snapshot', '/api/checkpoints/3/download', '/api/anything-else']) {
      const res = await fetch(srv.url + path, { redirect: 'manual' });
      expect(res.status, path).toBe(401);
      const body = await res.text();
      expect(body, path).not.toContain('site-01');
    }
    const page = await fetch(srv.url + '/');
    expect(await page.text()).toContain('<form method="post" action="/login">');
    const wrongBearer = await fetch(srv.url + '/api/snapshot', { headers: { authorization: 'Bearer not-the-token-123456' } });
    expect(wrongBearer.status).toBe(401);
    const wrongLink = await fetch(srv.url + '/?token=not-the-token-123456', { redirect: 'manual' });
    expect(wrongLink.status).toBe(401);
    expect(wrongLink.headers.get('set-cookie')).toBeNull();
    expect((await fetch(srv.url + '/login')).status).toBe(200);
  });

  it('logs in by form or by ?token= link with an HttpOnly SameSite=Strict cookie', async () => {
    const bad = await fetch(srv.url + '/login', { method: 'POST', body: new URLSearchParams({ token: 'wrong-token-wrong-token' }), redirect: 'manual' });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('set-cookie')).toBeNull();

    const good = await fetch(srv.url + '/login', { method: 'POST', body: new URLSearchParams({ token: TEST_TOKEN }), redirect: 'manual' });
    expect(good.status).toBe(303);
    expect(good.headers.get('location')).toBe('/');
    const setCookie = good.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).not.toContain(TEST_TOKEN);

    const link = await fetch(`${srv.url}/?view=1&token=${TEST_TOKEN}`, { redirect: 'manual' });
    expect(link.status).toBe(303);
    expect(link.headers.get('location')).toBe('/?view=1');
    const cookie = cookieFrom(link);

    const page = await fetch(srv.url + '/', { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).toContain('/assets/js/main.js');
    // no external resource anywhere in the page
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);

    const api = await fetch(srv.url + '/api/snapshot', { headers: { cookie } });
    expect(api.status).toBe(200);
    const snap = await api.json();
    expect(snap.sites.map((s: { id: string }) => s.id)).toEqual(['site-01', 'site-02']);
    expect(typeof snap.serverTime).toBe('string');
    const bearer = await fetch(srv.url + '/api/snapshot', { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(bearer.status).toBe(200);
  });

  it('gzips a large snapshot and clears the cookie on logout', async () => {
    srv.setSnapshot(makeSnapshot({ sites: 32, rounds: 100 }));
    try {
      const res = await fetch(srv.url + '/api/snapshot', { headers: { authorization: `Bearer ${TEST_TOKEN}`, 'accept-encoding': 'gzip' } });
      expect(res.headers.get('content-encoding')).toBe('gzip');
      const body = await res.json();
      expect(body.rounds).toHaveLength(100);
    } finally {
      srv.setSnapshot(makeSnapshot({ sites: 2, rounds: 3 }));
    }
    const out = await fetch(srv.url + '/logout', { method: 'POST', redirect: 'manual' });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toMatch(/^patchfed_dashboard=; .*Max-Age=0/);
  });

  it('serves checkpoint artifacts only with the token, 404 for unknown and 400 for bad versions', async () => {
    const auth = { authorization: `Bearer ${TEST_TOKEN}` };
    const res = await fetch(srv.url + '/api/checkpoints/3/download', { headers: auth });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="weights-v3.pfw"');
    expect([...new Uint8Array(await res.arrayBuffer())]).toEqual([1, 2, 3, 4, 5]);
    expect((await fetch(srv.url + '/api/checkpoints/4/download', { headers: auth })).status).toBe(404);
    expect((await fetch(srv.url + '/api/checkpoints/abc/download', { headers: auth })).status).toBe(400);
  });

  it('serves the chart and socket.io libraries from node_modules', async () => {
    for (const path of ['/assets/vendor/uPlot.iife.min.js', '/assets/vendor/uPlot.min.css', '/assets/vendor/socket.io.min.js', '/assets/js/main.js', '/assets/css/dashboard.css']) {
      const res = await fetch(srv.url + path);
      expect(res.status, path).toBe(200);
      expect((await res.text()).length, path).toBeGreaterThan(500);
    }
    expect((await fetch(srv.url + '/assets/vendor/../../package.json')).status).not.toBe(200);
    expect((await fetch(srv.url + '/assets/vendor/nope.js')).status).toBe(404);
    expect((await fetch(srv.url + '/assets/js/%2e%2e/%2e%2e/assets.ts')).status).toBe(404);
  });

  it('serves assets with their type, gzip when asked, and a validator that turns a reload into a 304', async () => {
    const plain = await fetch(srv.url + '/assets/vendor/uPlot.iife.min.js', { headers: { 'accept-encoding': 'identity' } });
    const body = Buffer.from(await plain.arrayBuffer());
    expect(plain.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(plain.headers.get('content-encoding')).toBeNull();
    expect(plain.headers.get('cache-control')).toBe('no-cache');
    const etag = plain.headers.get('etag')!;
    expect(etag).toMatch(/^"[\w-]{22}"$/);
    const { request } = await import('node:http');
    const gz = await new Promise<{ encoding?: string; bytes: Buffer }>((resolve, reject) => {
      request(srv.url + '/assets/vendor/uPlot.iife.min.js', { headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ encoding: res.headers['content-encoding'], bytes: Buffer.concat(chunks) }));
      })
        .on('error', reject)
        .end();
    });
    expect(gz.encoding).toBe('gzip');
    expect(gz.bytes.length).toBeLessThan(body.length / 2);
    expect(gunzipSync(gz.bytes).equals(body)).toBe(true);
    const again = await fetch(srv.url + '/assets/vendor/uPlot.iife.min.js', { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect((await fetch(srv.url + '/assets/css/dashboard.css')).headers.get('content-type')).toBe('text/css; charset=utf-8');
  });

  it('refuses unauthorised sockets: they never receive a snapshot', async () => {
    const link = await fetch(`${srv.url}/?token=${TEST_TOKEN}`, { redirect: 'manual' });
    const cookie = cookieFrom(link);

    let leaked = 0;
    const anonymous = open();
    const wrongToken = open({ auth: { token: 'wrong-token-wrong-token' } });
    const crossSite = open({ extraHeaders: { cookie, origin: 'http://evil.example' } });
    for (const s of [anonymous, wrongToken, crossSite]) s.on('snapshot', () => leaked++);
    const outcomes = await Promise.all(
      [anonymous, wrongToken, crossSite].map((s) =>
        Promise.race([once<Error>(s, 'connect_error').then((e) => e.message), once(s, 'connect').then(() => 'connected')]),
      ),
    );
    expect(outcomes).toEqual(['unauthorized', 'unauthorized', 'unauthorized']);

    // An authorised viewer (cookie) gets a snapshot on connect and every publish.
    const viewer = open({ extraHeaders: { cookie } });
    const first = JSON.parse(await once<string>(viewer, 'snapshot'));
    expect(first.sites).toHaveLength(2);
    const pushed = once<string>(viewer, 'snapshot');
    srv.handle.publishSnapshot();
    await pushed;
    // By the time the broadcast reached the viewer, it reached every connected socket.
    expect(leaked).toBe(0);
    expect([anonymous, wrongToken, crossSite].every((s) => !s.connected)).toBe(true);

    // A script may authenticate with the token in the handshake instead of the cookie.
    const script = open({ auth: { token: TEST_TOKEN } });
    expect(JSON.parse(await once<string>(script, 'snapshot')).experiment.id).toBe('brats-demo');
  });

  it('pushes events immediately', async () => {
    const viewer = open({ auth: { token: TEST_TOKEN } });
    await once(viewer, 'snapshot');
    const got = once<{ kind: string; site: string }>(viewer, 'event');
    srv.handle.publishEvent({ time: new Date().toISOString(), kind: 'dropout', site: 'site-02', message: 'site-02 disconnected' });
    expect(await got).toMatchObject({ kind: 'dropout', site: 'site-02' });
  });
});

describe('dashboard snapshot throttling', () => {
  it('coalesces a burst of publishSnapshot calls into a leading and one trailing push carrying the newest state', async () => {
    const snap = makeSnapshot({ sites: 2, rounds: 3 });
    const srv = await startDashboardServer(snap, { minPushIntervalMs: 200 });
    const viewer = connect(`${srv.url}/dashboard`, { transports: ['websocket'], reconnection: false, auth: { token: TEST_TOKEN } });
    try {
      await once(viewer, 'snapshot');
      const received: Array<{ rounds: unknown[] }> = [];
      viewer.on('snapshot', (json: string) => received.push(JSON.parse(json)));
      const callsBefore = srv.providerCalls();
      const ids = [siteId(0), siteId(1)];
      for (let i = 0; i < 20; i++) {
        srv.setSnapshot({ ...snap, rounds: [...snap.rounds, ...Array.from({ length: i + 1 }, (_, k) => makeRound(4 + k, ids, snap.experiment.labels, () => 0.5))] });
        srv.handle.publishSnapshot();
      }
      await new Promise<void>((resolve) => {
        const check = () => (received.length >= 2 ? resolve() : setTimeout(check, 20));
        check();
      });
      expect(srv.providerCalls() - callsBefore).toBe(2);
      expect(received).toHaveLength(2);
      expect(received[0]!.rounds).toHaveLength(4);
      expect(received[1]!.rounds).toHaveLength(23);
    } finally {
      viewer.close();
      await srv.close();
    }
  });
});
