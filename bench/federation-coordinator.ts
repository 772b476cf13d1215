/**
 * Child process of `patchfed bench federation`: the real coordinator (startCoordinator) on a
 * config file, reporting on stdout, one JSON object per line: `ready` (url, pid), `round-complete`
 * (time, checkpoint, bytes moved in the round), `stopped`. Reads "stop" on stdin to shut down.
 * With BENCH_CPU_PROFILE=<file> it profiles the CPU from `ready` (after start-up and the initial
 * model) to `stop`, i.e. the round, and writes the V8 profile there.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createInterface } from 'node:readline';
import { startCoordinator } from '../coordinator/index.ts';
import { loadCoordinatorConfig } from '../coordinator/server/setup.ts';

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const configPath = process.argv[2];
if (!configPath) throw new Error('usage: federation-coordinator.ts <coordinator.json>');
const { config, baseDir } = loadCoordinatorConfig(configPath);
const coordinator = await startCoordinator(config, { baseDir });
coordinator.events.on('round-complete', (e) => {
  const round = coordinator.snapshot().rounds.find((r) => r.round === e.round);
  emit({ event: 'round-complete', at: Date.now(), round: e.round, checkpointVersion: e.checkpointVersion, bytesMoved: round?.bytesMoved ?? null });
});
coordinator.events.on('update-rejected', (e) => emit({ event: 'update-rejected', at: Date.now(), siteId: e.siteId, message: e.message }));

// Start-up garbage (the initial model was generated here) is not the round's: collect it first.
(globalThis as { gc?: () => void }).gc?.();
const profileFile = process.env.BENCH_CPU_PROFILE;
const session = profileFile ? new Session() : null;
if (session) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}
// What the idle RSS is made of (V8 heap vs native buffers vs code and the loader thread), for the report.
const memory = process.memoryUsage();
emit({ event: 'ready', url: coordinator.url, pid: process.pid, at: Date.now(), heapUsed: memory.heapUsed, heapTotal: memory.heapTotal, external: memory.external, arrayBuffers: memory.arrayBuffers });

const stdin = createInterface({ input: process.stdin });
stdin.on('line', (line) => {
  if (line.trim() !== 'stop') return;
  void (async () => {
    if (session && profileFile) {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(profileFile, JSON.stringify(profile));
    }
    await coordinator.stop();
    emit({ event: 'stopped', at: Date.now() });
    process.exit(0);
  })();
});
