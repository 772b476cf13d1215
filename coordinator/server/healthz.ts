/**
 * `GET /healthz`: 503 while unhealthy, with the reasons, so load balancers, supervisors and people
 * all see it; also the last completed round and how the experiment ended (the simulator polls it).
 */
import type { Express } from 'express';
import type { StateDb } from '../store/index.ts';
import type { CoordinatorHealth } from './health.ts';
import type { ExperimentEnd } from './scheduler.ts';

export interface HealthzContext {
  experimentId: string;
  db: StateDb;
  health: CoordinatorHealth;
  end(): ExperimentEnd | null;
}

export function mountHealthz(app: Express, ctx: HealthzContext): void {
  app.get('/healthz', (_req, res) => {
    const status = ctx.health.status();
    let lastCompletedRound: number | null = null;
    try {
      lastCompletedRound = ctx.db.lastCompletedRound(ctx.experimentId);
    } catch (e) {
      ctx.health.noteFailure('database', 'the state database cannot be read', e);
    }
    const body = { ok: status.ok, experiment: ctx.experimentId, lastCompletedRound, end: ctx.end()?.kind ?? null, problems: status.problems };
    res.status(status.ok ? 200 : 503).set('Cache-Control', 'no-store').json(body);
  });
}
