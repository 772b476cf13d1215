import { describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import {
  COORDINATOR_MESSAGE_TYPES,
  MESSAGE_SCHEMAS,
  REPLY_TYPES,
  SITE_MESSAGE_TYPES,
  encodeMessage,
  errorReply,
  makeReply,
  parseMessage,
  parseReply,
  safeParseMessage,
  type Message,
  type MessageType,
} from '../shared/protocol/messages.ts';
import { MAX_CHUNK_BYTES, MAX_CIPHERTEXT_BYTES, PROTOCOL_VERSION, SOCKET_IO_MAX_HTTP_BUFFER_SIZE } from '../shared/protocol/limits.ts';
import { SEAL_NONCE_BYTES } from '../shared/crypto/seal.ts';

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill);
const sha = 'ab'.repeat(32);
const transferId = '0123456789abcdef0123';
const metrics = { loss: 0.42, dice: { liver: 0.91, tumour: 0.55 }, timeMs: 12_000, peakMemoryBytes: 1_500_000_000, backend: 'wasm', patch: [64, 64, 48], batch: 2 };

/** One valid typed message of every type. */
const samples: { [T in MessageType]: Message<T> } = {
  hello: { protocolVersion: PROTOCOL_VERSION, siteId: 'hospital-a', agentVersion: '0.1.0' },
  auth: { sessionId: 'f'.repeat(32), siteId: 'hospital-a', siteNonce: bytes(32), signature: bytes(64) },
  'checkpoint-request': { experimentId: 'liver-2026', version: 3, index: 0 },
  'update-begin': { transferId, round: 2, totalBytes: 5_000_000, chunkBytes: 2 * 1024 * 1024, chunkCount: 3, sha256: sha },
  'update-resume': { transferId },
  'update-chunk': { transferId, index: 1, nonce: bytes(SEAL_NONCE_BYTES), ciphertext: bytes(1000), signature: bytes(64) },
  'update-commit': { transferId, samples: 40, metrics, signature: bytes(64) },
  status: { round: 2, stepsDone: 10, stepsTotal: 100, phase: 'training' },
  error: { code: 'out-of-memory', message: 'training ran out of memory' },
  'round-decline': { round: 2, attempt: 1, code: 'budget-too-small', reason: 'the 10 MB budget fits no patch', signature: bytes(64) },
  'final-evaluation': {
    experimentId: 'liver-2026',
    round: 20,
    checkpointVersion: 20,
    checkpointSha256: sha,
    model: 'global',
    cases: 8,
    nsdToleranceMm: 1,
    classes: [{ name: 'liver', dice: { mean: 0.93, n: 8, infinite: 0 }, hd95: { mean: 4.2, n: 8, infinite: 1 }, nsd: { mean: 0.81, n: 8, infinite: 0 } }],
    signature: bytes(64),
  },
  challenge: { protocolVersion: PROTOCOL_VERSION, sessionId: 'a'.repeat(32), nonce: bytes(32), coordinatorSignPublicKey: bytes(32) },
  'auth-ok': { sessionId: 'a'.repeat(32), signature: bytes(64) },
  'auth-fail': { code: 'unknown-site', reason: 'not enrolled' },
  'round-task': {
    round: 2,
    attempt: 1,
    experimentId: 'liver-2026',
    checkpoint: { version: 2, sha256: sha, size: 100_000_000, signature: bytes(64) },
    steps: 200,
    deadline: 1_800_000_000_000,
    fit: { proximalMu: 0.01, localTensors: ['enc0/norm1/gamma'] },
    upload: { chunkBytes: 2 * 1024 * 1024, window: 4 },
    signature: bytes(64),
  },
  'checkpoint-chunk': { experimentId: 'liver-2026', version: 2, index: 0, chunkCount: 48, data: bytes(2048) },
  'transfer-status': { transferId, nextIndex: 1, chunkCount: 3 },
  'chunk-ack': { transferId, index: 1 },
  'commit-ok': { transferId, sha256: sha },
  // Types added by the coordinator's author; sampled here so the round trip covers every type.
  'site-info': { backend: 'wasm', gpu: false, memoryBudgetMB: 4096, patch: [64, 64, 48], batch: 2 },
  experiment: {
    description: {
      id: 'liver-2026',
      task: 'liver and tumour',
      labels: { '0': 'background', '1': 'liver', '2': 'tumour' },
      modalities: { '0': 'CT' },
      model: { mode: 'patch', preset: 'cpu-small', norm: 'instance', cascadeFactor: 0.5 },
      rounds: 20,
      localSteps: 100,
      learningRate: 0.001,
      strategy: { name: 'fedavg' },
      seed: 7,
    },
    signature: bytes(64),
  },
  'round-cancel': { round: 2, code: 'round-closed', reason: 'the round closed without this site', signature: bytes(64) },
  'experiment-complete': { experimentId: 'liver-2026', round: 20, checkpoint: { version: 20, sha256: sha, size: 1000, signature: bytes(64) }, signature: bytes(64) },
  // Secure aggregation (shared/secagg).
  'secagg-keys': { round: 2, attempt: 1, maskPublicKey: bytes(32, 2), sharePublicKey: bytes(32, 3), signature: bytes(64) },
  'secagg-shares': { round: 2, attempt: 1, envelopes: [{ to: 'hospital-b', box: bytes(176) }], signature: bytes(64) },
  'secagg-reveal': { round: 2, attempt: 1, selfMaskShares: [{ owner: 'hospital-a', x: 1, y: bytes(66) }], keyShares: [], signature: bytes(64) },
  'secagg-ack': { round: 2, attempt: 1, step: 'shares' },
  'secagg-roster': {
    round: 2,
    attempt: 1,
    roster: [
      { siteId: 'hospital-a', maskPublicKey: bytes(32, 4), sharePublicKey: bytes(32, 5) },
      { siteId: 'hospital-b', maskPublicKey: bytes(32, 6), sharePublicKey: bytes(32, 7) },
    ],
    signature: bytes(64),
  },
  'secagg-envelopes': { round: 2, attempt: 1, envelopes: [{ from: 'hospital-b', box: bytes(176) }], signature: bytes(64) },
  'secagg-unmask': { round: 2, attempt: 1, dropped: ['hospital-c'], survivors: ['hospital-a', 'hospital-b'], signature: bytes(64) },
};

function rejects(type: string, payload: unknown): PatchFedError {
  const r = safeParseMessage(type as MessageType, payload);
  expect(r.ok, `${type}: ${String(payload).slice(0, 80)}`).toBe(false);
  const err = (r as { ok: false; error: PatchFedError }).error;
  expect(err).toBeInstanceOf(PatchFedError);
  let thrown: unknown;
  try {
    parseMessage(type as MessageType, payload);
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(PatchFedError);
  return err;
}

describe('protocol messages', () => {
  it('lists exactly the message types a site may send, each with a schema', () => {
    // A tripwire: adding a message type a site may send must be a deliberate change to this list.
    expect([...SITE_MESSAGE_TYPES].sort()).toEqual([
      'auth',
      'checkpoint-request',
      'error',
      'final-evaluation',
      'hello',
      'round-decline',
      'secagg-keys',
      'secagg-reveal',
      'secagg-shares',
      'site-info',
      'status',
      'update-begin',
      'update-chunk',
      'update-commit',
      'update-resume',
    ]);
    for (const t of [...SITE_MESSAGE_TYPES, ...COORDINATOR_MESSAGE_TYPES]) expect(MESSAGE_SCHEMAS[t], t).toBeDefined();
    expect(Object.isFrozen(SITE_MESSAGE_TYPES)).toBe(true);
    // Every request a site sends gets replies only from coordinator message types.
    for (const [req, replies] of Object.entries(REPLY_TYPES)) {
      expect(SITE_MESSAGE_TYPES).toContain(req);
      for (const r of replies) expect(COORDINATOR_MESSAGE_TYPES).toContain(r);
    }
  });

  it('socket.io buffer limit leaves room for the largest chunk', () => {
    expect(MAX_CHUNK_BYTES).toBe(4 * 1024 * 1024);
    expect(SOCKET_IO_MAX_HTTP_BUFFER_SIZE).toBeGreaterThan(MAX_CIPHERTEXT_BYTES);
  });

  it('round-trips every message type through its wire form (JSON-safe except binary)', () => {
    for (const type of Object.keys(samples) as MessageType[]) {
      const wire = encodeMessage(type, samples[type] as never) as Record<string, unknown>;
      const back = parseMessage(type, wire);
      expect(back, type).toEqual(samples[type]);
      // Keys, nonces and signatures travel as base64 text.
      if (type === 'auth') expect(typeof wire.signature).toBe('string');
    }
    // Binary attachments may arrive as Buffer or ArrayBuffer and come out as Uint8Array.
    const wire = encodeMessage('update-chunk', samples['update-chunk']) as Record<string, unknown>;
    const viaArrayBuffer = parseMessage('update-chunk', { ...wire, ciphertext: bytes(1000).buffer });
    expect(viaArrayBuffer.ciphertext).toBeInstanceOf(Uint8Array);
    expect(parseMessage('update-chunk', { ...wire, ciphertext: Buffer.alloc(1000, 1) }).ciphertext.length).toBe(1000);
  });

  it('refuses wrong types, missing and extra fields, and out-of-range values', () => {
    const hello = encodeMessage('hello', samples.hello);
    const begin = encodeMessage('update-begin', samples['update-begin']);
    const commit = encodeMessage('update-commit', samples['update-commit']) as Record<string, unknown>;
    const cases: [MessageType, unknown][] = [
      ['hello', null],
      ['hello', undefined],
      ['hello', 'hello'],
      ['hello', 42],
      ['hello', [hello]],
      ['hello', { ...hello, siteId: 123 }],
      ['hello', { ...hello, siteId: '../../etc/passwd' }],
      ['hello', { ...hello, protocolVersion: 0 }],
      ['hello', { ...hello, protocolVersion: 1.5 }],
      ['hello', { ...hello, extra: true }],
      ['hello', { siteId: 'a' }],
      ['update-begin', { ...begin, chunkCount: 4 }], // inconsistent with totalBytes / chunkBytes
      ['update-begin', { ...begin, chunkBytes: 512 }], // below 1 MiB
      ['update-begin', { ...begin, chunkBytes: 8 * 1024 * 1024 }], // above 4 MiB
      ['update-begin', { ...begin, totalBytes: 2 ** 40 }],
      ['update-begin', { ...begin, round: -1 }],
      ['update-begin', { ...begin, round: 1.5 }],
      ['update-begin', { ...begin, round: Number.NaN }],
      ['update-begin', { ...begin, round: Number.POSITIVE_INFINITY }],
      ['update-begin', { ...begin, sha256: 'AB'.repeat(32) }],
      ['update-begin', { ...begin, transferId: 'short' }],
      ['update-begin', { ...begin, transferId: '../../../../tmp/x-0123456789' }],
      ['update-commit', { ...commit, samples: 0 }],
      ['update-commit', { ...commit, metrics: { ...metrics, dice: { liver: 1.5 } } }],
      ['update-commit', { ...commit, metrics: { ...metrics, dice: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, 0.5])) } }],
      ['update-commit', { ...commit, metrics: { ...metrics, patch: [64, 64] } }],
      ['update-commit', { ...commit, metrics: { ...metrics, imageData: [1, 2, 3] } }],
      ['update-commit', { ...commit, signature: 'AAAA' }],
      ['status', { round: 1, stepsDone: 11, stepsTotal: 10 }],
      ['round-task', { ...encodeMessage('round-task', samples['round-task']), strategy: { name: 'fedprox' } }],
      ['round-task', { ...encodeMessage('round-task', samples['round-task']), fit: { proximalMu: -1, localTensors: [] } }],
      ['round-task', { ...encodeMessage('round-task', samples['round-task']), fit: { proximalMu: 0, localTensors: ['bad\nname'] } }],
      ['round-task', { ...encodeMessage('round-task', samples['round-task']), signature: undefined }],
      ['transfer-status', { transferId, nextIndex: 4, chunkCount: 3 }],
    ];
    for (const [type, payload] of cases) {
      const err = rejects(type, payload);
      expect(err.code).toBe('bad-message');
      expect(err.message).toContain(`'${type}'`);
    }
  });

  it('refuses Buffers and typed arrays where strings or other binary are expected, and oversize binary', () => {
    const chunk = encodeMessage('update-chunk', samples['update-chunk']) as Record<string, unknown>;
    rejects('update-chunk', { ...chunk, signature: Buffer.alloc(64) });
    rejects('update-chunk', { ...chunk, nonce: bytes(SEAL_NONCE_BYTES) });
    rejects('hello', { ...encodeMessage('hello', samples.hello), siteId: Buffer.from('hospital-a') });
    rejects('update-chunk', { ...chunk, ciphertext: new Float32Array(250) });
    rejects('update-chunk', { ...chunk, ciphertext: 'base64 text is not binary' });
    rejects('update-chunk', { ...chunk, ciphertext: bytes(10) }); // shorter than the authenticator
    const tooBig = rejects('update-chunk', { ...chunk, ciphertext: new Uint8Array(MAX_CIPHERTEXT_BYTES + 1) });
    expect(tooBig.message).toMatch(/binary/);
    // Binary anywhere else in a message is refused too.
    rejects('status', { round: 1, stepsDone: 1, stepsTotal: 2, phase: Buffer.from('training') });
  });

  it('refuses huge strings and deep or wide structures before validating', () => {
    const huge = 'x'.repeat(10_000_000);
    expect(rejects('error', { code: 'x', message: huge }).message).toMatch(/exceeds/);
    expect(rejects('hello', { ...encodeMessage('hello', samples.hello), [huge.slice(0, 100_000)]: 1 }).message).toMatch(/exceeds/);
    let deep: unknown = {};
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    expect(rejects('hello', deep).message).toMatch(/nested deeper/);
    rejects('update-commit', { ...encodeMessage('update-commit', samples['update-commit']), metrics: { ...metrics, patch: new Array(1_000_000).fill(1) } });
    rejects('hello', Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i])));
    const errorText = rejects('error', { code: 'x', message: 'y'.repeat(2000) });
    expect(errorText.message.length).toBeLessThan(1000);
  });

  it('refuses prototype-pollution keys and leaves Object.prototype clean', () => {
    const commit = JSON.stringify(encodeMessage('update-commit', samples['update-commit']));
    const hostile = [
      JSON.parse('{"__proto__": {"polluted": true}, "protocolVersion": 1, "siteId": "a", "agentVersion": "1"}'),
      JSON.parse(commit.replace('"dice":{', '"dice":{"__proto__":{"polluted":true},')),
      JSON.parse(commit.replace('"dice":{', '"dice":{"constructor":{"prototype":{"polluted":true}},')),
      JSON.parse('{"protocolVersion": 1, "siteId": "a", "agentVersion": "1", "prototype": {}}'),
    ];
    const types: MessageType[] = ['hello', 'update-commit', 'update-commit', 'hello'];
    hostile.forEach((payload, i) => expect(rejects(types[i]!, payload).message).toMatch(/not allowed/));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false);
  });

  it('refuses non-plain objects: class instances, Maps, Dates, getters, symbols, functions, bigints, proxies', () => {
    const hello = encodeMessage('hello', samples.hello);
    class Hello {
      protocolVersion = 1;
      siteId = 'a';
      agentVersion = '1';
    }
    let getterCalls = 0;
    const withGetter = { ...hello };
    Object.defineProperty(withGetter, 'siteId', { enumerable: true, get: () => (getterCalls++, 'hospital-a') });
    const throwingProxy = new Proxy({}, { getPrototypeOf: () => { throw new Error('boom'); } });
    const lyingProxy = new Proxy({ ...hello }, { get: (t, k) => (k === 'siteId' ? 123 : Reflect.get(t, k)) });
    const cases: unknown[] = [
      new Hello(),
      new Map(Object.entries(hello)),
      new Date(),
      withGetter,
      { ...hello, [Symbol('x')]: 1 },
      { ...hello, agentVersion: () => '1' },
      { ...hello, protocolVersion: 1n },
      throwingProxy,
      Object.create({ inherited: true }),
      { ...hello, siteId: new String('hospital-a') },
    ];
    for (const payload of cases) expect(rejects('hello', payload).code).toBe('bad-message');
    expect(getterCalls).toBe(0);
    // A proxy whose get() lies is judged on what it exposes as data properties, and the typed
    // result is a plain copy, not the proxy.
    const fromProxy = parseMessage('hello', lyingProxy);
    expect(fromProxy.siteId).toBe('hospital-a');
    expect(Object.getPrototypeOf(fromProxy)).toBe(Object.prototype);
  });

  it('refuses unknown message types, including prototype names', () => {
    for (const type of ['nope', 'toString', '__proto__', 'constructor', 'hasOwnProperty', '']) {
      expect(rejects(type, {}).code).toBe('unknown-message-type');
    }
  });

  it('parses acknowledgement replies only of the types allowed for the request', () => {
    const ack = makeReply('chunk-ack', samples['chunk-ack']);
    expect(parseReply('update-chunk', ack)).toEqual({ type: 'chunk-ack', payload: samples['chunk-ack'] });
    expect(parseReply('update-chunk', errorReply({ code: 'chunk-bad-signature', message: 'no' })).type).toBe('error');
    const bad: unknown[] = [
      makeReply('commit-ok', samples['commit-ok']), // a reply type not allowed for update-chunk
      { type: 'chunk-ack' },
      { type: 'chunk-ack', payload: samples['chunk-ack'], extra: 1 },
      { type: 'chunk-ack', payload: { transferId, index: -1 } },
      null,
      'chunk-ack',
      JSON.parse(`{"type":"chunk-ack","payload":{"transferId":"${transferId}","index":1},"__proto__":{}}`),
    ];
    for (const raw of bad) {
      let thrown: unknown;
      try {
        parseReply('update-chunk', raw);
      } catch (e) {
        thrown = e;
      }
      expect(thrown, JSON.stringify(raw)).toBeInstanceOf(PatchFedError);
    }
    // Error replies never carry malformed codes or unbounded text.
    const r = errorReply({ code: 'Not A Code!', message: 'z'.repeat(5000) });
    expect(r).toMatchObject({ type: 'error', payload: { code: 'error' } });
    expect(((r.payload as { message: string }).message).length).toBe(1000);
  });

  it('refuses to put a malformed message on the wire', () => {
    let thrown: unknown;
    try {
      encodeMessage('update-chunk', { ...samples['update-chunk'], nonce: bytes(SEAL_NONCE_BYTES + 1) });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(PatchFedError);
    expect((thrown as PatchFedError).code).toBe('bad-outgoing-message');
  });
});
