/**
 * Child process of `patchfed bench federation`: one site — the real site client
 * (CoordinatorClient: handshake, signed tasks, checkpoint download, encrypted resumable upload) —
 * whose "training" is a prepared update: the global model nudged by a tiny deterministic step.
 * Reports on stdout (JSON lines): `uploaded` with the times the upload began, its commit left and
 * the coordinator confirmed it, then exits when the experiment completes.
 *
 *   federation-site.ts <siteId> <coordinatorUrl> <site .key file> <coordinator .pub file>
 */
import { loadPublicKeyFile, loadSecretKeyFile } from '../shared/crypto/keys.ts';
import { CoordinatorClient } from '../site-agent/daemon/client.ts';

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const [siteId, url, keyFile, coordinatorPub] = process.argv.slice(2);
if (!siteId || !url || !keyFile || !coordinatorPub) throw new Error('usage: federation-site.ts <siteId> <url> <key> <coordinator.pub>');

const times: { begin?: number; commit?: number; handlerDone?: number } = {};
const client = new CoordinatorClient({
  url,
  siteId,
  keys: loadSecretKeyFile(keyFile),
  coordinatorPublicKey: loadPublicKeyFile(coordinatorPub),
  chunkBytes: 4 * 1024 * 1024,
  backoff: { initialMs: 200, maxMs: 1000 },
  log: (level, message) => {
    if (level === 'error') process.stderr.write(`${siteId}: ${message}\n`);
  },
  instrumentSocket: (socket) => {
    const emitOriginal = socket.emit.bind(socket);
    socket.emit = ((type: string, ...args: unknown[]) => {
      if (type === 'update-begin') times.begin ??= Date.now();
      if (type === 'update-commit') times.commit = Date.now();
      return emitOriginal(type, ...args);
    }) as typeof socket.emit;
  },
});

client.onTask(async (task) => {
  // A "training" step that costs nothing: every weight moves by a tiny, site-specific amount.
  const step = 1e-4 * (1 + (siteId.length % 7));
  const update = { manifest: task.global.manifest, values: task.global.values.map((v) => v.map((x) => x * (1 - step) + step)) };
  times.handlerDone = Date.now();
  return { update, samples: 100, metrics: { loss: 0.1, dice: {}, timeMs: 1, peakMemoryBytes: 1, backend: 'cpu', patch: [8, 8, 8], batch: 1 } };
});
client.on('uploaded', (u) => emit({ event: 'uploaded', siteId, bytes: u.bytes, handlerDone: times.handlerDone, begin: times.begin, commit: times.commit, confirmed: Date.now() }));
client.on('rejected', (r) => emit({ event: 'rejected', siteId, message: r.message }));
client.on('complete', () => {
  emit({ event: 'complete', siteId, at: Date.now() });
  void client.stop().then(() => process.exit(0));
});
client.start();
emit({ event: 'started', siteId, pid: process.pid });
