/** The Strategy an experiment's strategy spec (shared/config/strategy.ts) names. */
import { PatchFedError } from '../../shared/errors.ts';
import { StrategySpecSchema, type StrategySpec } from '../../shared/config/strategy.ts';
import { fedAvg } from './fedavg.ts';
import { fedBN } from './fedbn.ts';
import { fedProx } from './fedprox.ts';
import type { SamplingPolicy } from './sample-weighted.ts';
import type { Strategy } from './types.ts';

/** Builds the strategy; a spec that does not parse throws PatchFedError naming the field. */
export function createStrategy(spec: StrategySpec | unknown, sampling: Partial<SamplingPolicy> = {}, source = 'strategy'): Strategy {
  const parsed = StrategySpecSchema.safeParse(spec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') || '(top level)';
    throw new PatchFedError('bad-strategy-config', `${source}: '${field}': ${issue?.message ?? 'invalid'}`, { subject: field });
  }
  const s = parsed.data;
  switch (s.name) {
    case 'fedavg':
      return fedAvg(sampling);
    case 'fedprox':
      return fedProx(sampling, s.mu);
    case 'fedbn':
      return fedBN(sampling);
  }
}
