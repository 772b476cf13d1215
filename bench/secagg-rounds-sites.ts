/**
 * Child process of `patchfed bench secagg --federated` (bench/secagg-rounds.ts): several real site
 * clients (CoordinatorClient — handshake, signed tasks, checkpoint download, and under secure
 * aggregation the whole protocol: keys, share envelopes, masked upload, unmasking shares) in one
 * process, so 32 sites fit a 2-core machine. "Training" is a prepared update, as in
 * bench/federation-site.ts: the global model nudged by a tiny deterministic step.
 *
 * It counts the bytes of every engine.io packet each site sends and receives (the socket.io
 * events and their binary attachments; WebSocket and TCP framing excluded) and reports them on
 * stdout, one JSON object per line, whenever a site gets a round task (`task`) and when the
 * experiment completes (`complete`): the difference between two `task` lines is one round's traffic
 * of that site, i.e. the coordinator's inbound (site out) and outbound (site in) bytes for it.
 *
 *   secagg-rounds-sites.ts <coordinatorUrl> <coordinator .pub file> <siteId>=<site .key file> ...
 */
import { loadPublicKeyFile, loadSecretKeyFile } from '../shared/crypto/keys.ts';
import { CoordinatorClient } from '../site-agent/daemon/client.ts';

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** Bytes of an engine.io packet's data: a string (socket.io's JSON frame) or a binary attachment. */
function dataBytes(data: unknown): number {
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

interface PacketSource {
  on(event: 'packet' | 'packetCreate', listener: (packet: { data?: unknown }) => void): unknown;
}

const [url, coordinatorPub, ...specs] = process.argv.slice(2);
if (!url || !coordinatorPub || specs.length === 0) throw new Error('usage: secagg-rounds-sites.ts <url> <coordinator.pub> <siteId>=<key file> ...');
const coordinatorPublicKey = loadPublicKeyFile(coordinatorPub);
let running = specs.length;

for (const spec of specs) {
  const at = spec.indexOf('=');
  if (at < 1) throw new Error(`bad site spec '${spec}': expected <siteId>=<key file>`);
  const siteId = spec.slice(0, at);
  const keyFile = spec.slice(at + 1);
  const bytes = { in: 0, out: 0 };
  const client = new CoordinatorClient({
    url,
    siteId,
    keys: loadSecretKeyFile(keyFile),
    coordinatorPublicKey,
    chunkBytes: 4 * 1024 * 1024,
    backoff: { initialMs: 200, maxMs: 1000 },
    log: (level, message) => {
      if (level === 'error') process.stderr.write(`${siteId}: ${message}\n`);
    },
    instrumentSocket: (socket) => {
      // Every (re)connection opens a new engine.io socket: count on each.
      socket.io.on('open', () => {
        const engine = socket.io.engine as unknown as PacketSource;
        engine.on('packetCreate', (p) => (bytes.out += dataBytes(p.data)));
        engine.on('packet', (p) => (bytes.in += dataBytes(p.data)));
      });
    },
  });
  client.onTask(async (task) => {
    const step = 1e-4 * (1 + (siteId.length % 7));
    const update = { manifest: task.global.manifest, values: task.global.values.map((v) => v.map((x) => x * (1 - step) + step)) };
    return { update, samples: 100, metrics: { loss: 0.1, dice: {}, timeMs: 1, peakMemoryBytes: 1, backend: 'cpu', patch: [8, 8, 8], batch: 1 } };
  });
  client.on('task', (t) => emit({ event: 'task', siteId, round: t.round, attempt: t.attempt, at: Date.now(), bytesIn: bytes.in, bytesOut: bytes.out }));
  client.on('rejected', (r) => emit({ event: 'rejected', siteId, message: r.message }));
  client.on('task-failed', (r) => emit({ event: 'task-failed', siteId, message: r.message }));
  client.on('complete', () => {
    emit({ event: 'complete', siteId, at: Date.now(), bytesIn: bytes.in, bytesOut: bytes.out });
    void client.stop().then(() => {
      if (--running === 0) process.exit(0);
    });
  });
  client.start();
}
emit({ event: 'started', sites: specs.length, pid: process.pid });
