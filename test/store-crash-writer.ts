/**
 * Child process for test/store-recovery.test.ts: a minimal coordinator loop that recovers, then
 * writes rounds and checkpoints as fast as it can until it is SIGKILLed. Prints "ready" after
 * recovery and "committed <round> <version>" after each durable round commit.
 * Usage: node --import tsx test/store-crash-writer.ts <stateDir>
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { CheckpointStore, recoverCoordinatorState, StateDb } from '../coordinator/store/index.ts';

const stateDir = process.argv[2];
if (!stateDir) throw new Error('usage: store-crash-writer.ts <stateDir>');
const keys = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(3));
const store = new CheckpointStore({ stateDir, keyId: 'crash-key', signer: (b) => nacl.sign.detached(b, keys.secretKey) });
const db = StateDb.open(join(stateDir, 'state.db'));
const EXP = 'crash-exp';

recoverCoordinatorState(db, store);
if (!db.getExperiment(EXP)) {
  db.createExperiment({ id: EXP, name: 'crash test', strategy: 'fedavg', config: {} });
  for (const id of ['site-a', 'site-b']) db.upsertSite({ id, fingerprint: `fp-${id}` });
}
if (db.lastCompleted(EXP) === undefined) {
  const initial = store.write({ experimentId: EXP, round: 0, artifact: randomBytes(4096) });
  db.commitInitialCheckpoint(EXP, initial.version);
}
process.stdout.write('ready\n');

for (;;) {
  const round = db.lastCompleted(EXP)!.round + 1;
  const r = db.openRound({ experimentId: EXP, round, selectedSites: ['site-a', 'site-b'] });
  for (const siteId of ['site-a', 'site-b']) {
    db.recordSiteUpdate({ roundId: r.id, siteId, status: 'accepted', numSamples: 10, bytes: 1000 });
    db.recordMetrics(r.id, siteId, [{ kind: 'loss', value: 1 / round }]);
  }
  db.startAggregation(r.id);
  // 32–256 KB so the kill often lands inside the checkpoint write.
  const artifact = randomBytes(32 * 1024 + Math.floor(Math.random() * 224 * 1024));
  const meta = store.write({ experimentId: EXP, round, artifact });
  db.completeRound(r.id, meta.version);
  process.stdout.write(`committed ${round} ${meta.version}\n`);
}
