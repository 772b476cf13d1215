/**
 * What the protocol fuzzer sends: a plausible payload for every message type of
 * shared/protocol/messages.ts (both directions: the coordinator must refuse its own types from
 * a site too) and seeded mutations of it — hostile values, missing, extra and retyped fields,
 * edge numbers, oversized strings and binaries, prototype-polluting keys, deep nesting — plus
 * mutations of real update-chunk streams (indices, transfer ids, nonces, ciphertext bits and
 * lengths, signatures) and of raw websocket / engine.io / socket.io frames.
 */
import { COORDINATOR_MESSAGE_TYPES, SITE_MESSAGE_TYPES } from '../shared/protocol/messages.ts';
import { PROTOCOL_VERSION } from '../shared/protocol/limits.ts';
import type { Rng } from '../shared/random.ts';

export const ALL_MESSAGE_TYPES: readonly string[] = [...SITE_MESSAGE_TYPES, ...COORDINATOR_MESSAGE_TYPES.filter((t) => !(SITE_MESSAGE_TYPES as readonly string[]).includes(t))];
/** Event names no peer should accept. */
const JUNK_EVENT_NAMES = ['', 'no-such-type', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'connect', 'disconnect', 'disconnecting', 'newListener', '../../etc/passwd', 'x'.repeat(5000), 'HELLO', 'hello ', 'update_chunk'];

export class Fuzz {
  constructor(readonly rng: Rng) {}

  int(n: number): number {
    return Math.floor(this.rng() * n);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  chance(p: number): boolean {
    return this.rng() < p;
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  base64(n: number): string {
    return this.bytes(n).toString('base64');
  }

  /** A value no schema field wants. */
  hostile(): unknown {
    return this.pick<() => unknown>([
      () => null,
      () => undefined,
      () => -1,
      () => 0,
      () => -0,
      () => 2 ** 53 + 1,
      () => 1e308,
      () => -1e308,
      () => Number.NaN,
      () => Number.POSITIVE_INFINITY,
      () => 0.5,
      () => '',
      () => 'x'.repeat(70_000),
      () => '\u0000\uffff\ud800',
      () => '../../../etc/passwd',
      () => '<script>alert(1)</script>',
      () => true,
      () => [],
      () => new Array(300).fill(0),
      () => JSON.parse('[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]'),
      () => JSON.parse('{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}'),
      () => ({ toString: 'x', valueOf: 1, toJSON: 2 }),
      () => this.bytes(this.int(3000)),
      () => Buffer.alloc(0),
      () => this.base64(this.int(200)),
      () => ({}),
      () => Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i])),
    ])();
  }

  /** A plausible payload of `type` (valid-looking, not necessarily valid for this connection). */
  template(type: string, ctx: { siteId: string; round: number; experimentId: string }): Record<string, unknown> {
    const transferId = `fz${this.base64(18).replace(/[^A-Za-z0-9]/g, 'a')}`.slice(0, 32);
    const sessionId = this.bytes(16).toString('hex');
    const sha = this.bytes(32).toString('hex');
    const metrics = { loss: 0.5, dice: { tumour: 0.5 }, timeMs: 5, peakMemoryBytes: 1000, backend: 'cpu', patch: [16, 16, 16], batch: 1 };
    const checkpoint = { version: 1, sha256: sha, size: 1000, signature: this.base64(64) };
    const templates: Record<string, () => Record<string, unknown>> = {
      hello: () => ({ protocolVersion: PROTOCOL_VERSION, siteId: ctx.siteId, agentVersion: '0.1.0' }),
      auth: () => ({ sessionId, siteId: ctx.siteId, siteNonce: this.base64(32), signature: this.base64(64) }),
      'checkpoint-request': () => ({ experimentId: ctx.experimentId, version: this.int(4), index: this.int(3) }),
      'update-begin': () => ({ transferId, round: ctx.round, totalBytes: 2 * 1024 * 1024, chunkBytes: 1024 * 1024, chunkCount: 2, sha256: sha }),
      'update-resume': () => ({ transferId }),
      'update-chunk': () => ({ transferId, index: this.int(3), nonce: this.base64(24), ciphertext: this.bytes(1000 + this.int(2000)), signature: this.base64(64) }),
      'update-commit': () => ({ transferId, samples: 10, metrics, signature: this.base64(64) }),
      status: () => ({ round: ctx.round, stepsDone: 1, stepsTotal: 2, phase: 'training' }),
      error: () => ({ code: 'fuzz', message: 'fuzzing' }),
      'site-info': () => ({ backend: 'cpu', gpu: false, memoryBudgetMB: 100, patch: [16, 16, 16], batch: 1 }),
      'round-decline': () => ({ round: ctx.round, attempt: 1, code: 'no-memory', reason: 'fuzz', signature: this.base64(64) }),
      challenge: () => ({ protocolVersion: PROTOCOL_VERSION, sessionId, nonce: this.base64(32), coordinatorSignPublicKey: this.base64(32) }),
      'auth-ok': () => ({ sessionId, signature: this.base64(64) }),
      'auth-fail': () => ({ code: 'x', reason: 'y' }),
      'round-task': () => ({ round: ctx.round, attempt: 1, experimentId: ctx.experimentId, checkpoint, steps: 5_000_000, deadline: Date.now(), fit: { proximalMu: 0, localTensors: [] }, signature: this.base64(64) }),
      experiment: () => ({ description: { id: ctx.experimentId }, signature: this.base64(64) }),
      'round-cancel': () => ({ round: ctx.round, code: 'x', reason: 'y', signature: this.base64(64) }),
      'experiment-complete': () => ({ experimentId: ctx.experimentId, round: ctx.round, checkpoint, signature: this.base64(64) }),
      'checkpoint-chunk': () => ({ experimentId: ctx.experimentId, version: 1, index: 0, chunkCount: 1, data: this.bytes(100) }),
      'transfer-status': () => ({ transferId, nextIndex: 0, chunkCount: 1 }),
      'chunk-ack': () => ({ transferId, index: 0 }),
      'commit-ok': () => ({ transferId, sha256: sha }),
    };
    // Own keys only: junk names such as 'hasOwnProperty' or '__proto__' must not reach Object.prototype.
    const make = Object.hasOwn(templates, type) ? templates[type] : undefined;
    return (make ?? (() => ({ round: ctx.round, value: this.hostile() })))();
  }

  /** One mutation of a payload (or, rarely, the payload unchanged). */
  mutate(base: Record<string, unknown>): unknown {
    const keys = Object.keys(base);
    const key = keys.length > 0 ? this.pick(keys) : 'x';
    switch (this.int(9)) {
      case 0:
        return this.hostile();
      case 1:
        return { ...base, [key]: this.hostile() };
      case 2: {
        const { [key]: _dropped, ...rest } = base;
        return rest;
      }
      case 3:
        return { ...base, [this.pick(['extra', '__proto__', 'constructor', 'x'.repeat(100)])]: this.hostile() };
      case 4:
        return { ...base, [key]: this.retyped(base[key]) };
      case 5: {
        const out: Record<string, unknown> = { ...base };
        for (const k of keys) if (this.chance(0.5)) out[k] = this.hostile();
        return out;
      }
      case 6:
        return [base];
      case 7:
        return JSON.parse(JSON.stringify(base, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('base64') : v)));
      default:
        return base;
    }
  }

  /** A different type of the same "shape": number↔string, bytes↔base64, array↔object. */
  retyped(v: unknown): unknown {
    if (typeof v === 'number') return this.pick([String(v), v + 0.5, -v, v * 1e12, [v]]);
    if (typeof v === 'string') return this.pick([Number(v), Buffer.from(v), v.repeat(100).slice(0, 20_000), v.slice(0, -1), `${v}=`]);
    if (Buffer.isBuffer(v)) return this.pick([v.toString('base64'), Array.from(v.subarray(0, 64)), v.subarray(0, v.length >> 1)]);
    if (Array.isArray(v)) return this.pick([{ ...v }, v.length, [...v, ...v]]);
    return this.hostile();
  }

  /** An event name: mostly real message types (both directions), sometimes junk. */
  eventName(): string {
    return this.chance(0.1) ? this.pick(JUNK_EVENT_NAMES) : this.pick(ALL_MESSAGE_TYPES);
  }

  /** Mutates one message of a real upload stream in flight (`payload` is the wire form). */
  mutateUpload(type: string, payload: Record<string, unknown>): Record<string, unknown> {
    const p = { ...payload };
    const flip = (b: Uint8Array): Buffer => {
      const copy = Buffer.from(b);
      if (copy.length > 0) copy[this.int(copy.length)]! ^= 1 << this.int(8);
      return copy;
    };
    switch (type) {
      case 'update-chunk': {
        const ct = p.ciphertext instanceof Uint8Array ? p.ciphertext : Buffer.alloc(0);
        const field = this.pick(['index', 'transferId', 'nonce', 'ciphertext', 'ciphertext', 'ciphertext', 'signature']);
        if (field === 'index') p.index = this.pick([Number(p.index) + 1, Number(p.index) - 1, 2 ** 31, -1, 0.5, 1e9]);
        else if (field === 'transferId') p.transferId = this.pick([`${String(p.transferId).slice(0, -1)}X`, '', '../x', 'a'.repeat(65)]);
        else if (field === 'nonce') p.nonce = this.pick([this.base64(24), this.base64(23), '']);
        else if (field === 'signature') p.signature = this.pick([this.base64(64), this.base64(63), '']);
        else
          p.ciphertext = this.pick<() => Buffer>([
            () => flip(ct),
            () => Buffer.from(ct.subarray(0, ct.length >> 1)),
            () => Buffer.concat([Buffer.from(ct), this.bytes(1 + this.int(64))]),
            () => Buffer.alloc(0),
            () => this.bytes(ct.length),
          ])();
        return p;
      }
      case 'update-begin': {
        const field = this.pick(['round', 'totalBytes', 'chunkBytes', 'chunkCount', 'sha256', 'transferId']);
        p[field] = this.pick([this.hostile(), typeof p[field] === 'number' ? Number(p[field]) + 1 : `${String(p[field])}0`, 0]);
        return p;
      }
      case 'update-commit': {
        const field = this.pick(['samples', 'metrics', 'signature', 'transferId']);
        if (field === 'samples') p.samples = this.pick([0, -1, 1e9 + 1, 2 ** 53, 0.5, Number(p.samples) + 1]);
        else if (field === 'metrics') p.metrics = this.mutate({ ...(p.metrics as Record<string, unknown>) });
        else p[field] = this.pick([this.base64(64), '', this.hostile()]);
        return p;
      }
      default:
        return this.mutate(p) as Record<string, unknown>;
    }
  }

  /**
   * A raw frame for a websocket before (or instead of) any handshake: garbage, engine.io
   * packets in the wrong direction, malformed socket.io packets, binary data, unknown
   * namespaces, absurd attachment counts.
   */
  rawFrame(): { opcode: 'text' | 'binary' | 'ping'; data: Buffer } {
    const text = (s: string) => ({ opcode: 'text' as const, data: Buffer.from(s) });
    return this.pick<() => { opcode: 'text' | 'binary' | 'ping'; data: Buffer }>([
      () => ({ opcode: 'binary', data: this.bytes(this.int(4000)) }),
      () => text(this.bytes(this.int(200)).toString('latin1')),
      () => text(String(this.int(10))),
      () => text('2'),
      () => text('6'),
      () => text('5'),
      () => text('1'),
      () => text('4'),
      () => text('40/nope,'),
      () => text('40/dashboard,{"token":"guess"}'),
      () => text(`40${JSON.stringify({ token: this.base64(20) })}`),
      () => text('42["hello",'),
      () => text('42[]'),
      () => text('42{"a":1}'),
      () => text('4299999999999999999999["hello",{}]'),
      () => text('43123["x"]'),
      () => text('45999999-["update-chunk",{"_placeholder":true,"num":0}]'),
      () => text('451-["update-chunk",{"_placeholder":true,"num":5}]'),
      () => text('41'),
      () => text('44{"message":"x"}'),
      () => text(`42${JSON.stringify(['hello', { protocolVersion: PROTOCOL_VERSION, siteId: 'fuzz', agentVersion: 'x'.repeat(this.int(9000)) }])}`),
      () => ({ opcode: 'ping', data: this.bytes(this.int(125)) }),
    ])();
  }
}
