/** Small waiting helpers for the simulation driver. */
import { readFileSync } from 'node:fs';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface Health {
  ok: boolean;
  lastCompletedRound: number | null;
  end: 'complete' | 'stopped' | null;
}

/** The coordinator's public /healthz, or null while it is not answering. */
export async function health(url: string): Promise<Health | null> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
    if (!res.ok) return null;
    return (await res.json()) as Health;
  } catch {
    return null;
  }
}

/** Last `lines` lines of a log file (to explain a process that died). */
export function logTail(file: string, lines = 15): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).map((l) => `    ${l}`).join('\n');
  } catch {
    return '    (no log)';
  }
}
