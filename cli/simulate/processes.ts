/**
 * Child processes of a simulation: the coordinator and one `patchfed site` daemon per site, each
 * a real `node cli/patchfed.js ...` process on loopback with stdout and stderr appended to its
 * own log file. Stopping sends SIGTERM (the commands shut down cleanly on it) and escalates to
 * SIGKILL only for a process that does not exit in time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../patchfed.js', import.meta.url));

export interface ManagedProcess {
  name: string;
  logFile: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly running: boolean;
}

export class ProcessSupervisor {
  private readonly procs = new Set<ManagedProcess>();
  /** Called when a process exits that nobody asked to stop (a crash). */
  onUnexpectedExit: (p: ManagedProcess, code: number | null, signal: NodeJS.Signals | null) => void = () => {};
  private readonly expected = new WeakSet<ManagedProcess>();

  /** Starts `patchfed <args>` with output appended to `logFile`. */
  start(name: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = {}): ManagedProcess {
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      // Own process group: a terminal Ctrl-C reaches only the simulator, which then stops each
      // child once with SIGTERM (a second signal would make the coordinator skip its clean stop).
      child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', fd, fd], env: { ...process.env, ...env }, detached: true });
    } finally {
      closeSync(fd); // the child holds its own copy
    }
    let running = true;
    const proc: ManagedProcess = {
      name,
      logFile,
      child,
      exited: new Promise((resolve) => {
        child.once('exit', (code, signal) => {
          running = false;
          this.procs.delete(proc);
          if (!this.expected.has(proc)) this.onUnexpectedExit(proc, code, signal);
          resolve({ code, signal });
        });
        child.once('error', () => {
          running = false;
          this.procs.delete(proc);
          resolve({ code: null, signal: null });
        });
      }),
      get running() {
        return running;
      },
    };
    this.procs.add(proc);
    return proc;
  }

  /** SIGKILL: the crash a simulation injects on purpose. */
  async kill(p: ManagedProcess): Promise<void> {
    this.expected.add(p);
    if (p.running) p.child.kill('SIGKILL');
    await p.exited;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(p: ManagedProcess, graceMs = 10_000): Promise<void> {
    this.expected.add(p);
    if (!p.running) return;
    p.child.kill('SIGTERM');
    const timer = setTimeout(() => p.running && p.child.kill('SIGKILL'), graceMs);
    await p.exited;
    clearTimeout(timer);
  }

  async stopAll(graceMs = 10_000): Promise<void> {
    await Promise.all([...this.procs].map((p) => this.stop(p, graceMs)));
  }

  /** Synchronous last resort (process 'exit' handler): no child outlives the simulation. */
  killAllNow(): void {
    for (const p of this.procs) {
      this.expected.add(p);
      try {
        p.child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
