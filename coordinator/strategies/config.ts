/** Strategy selection from a config file / CLI options, validated with zod. */
import { z } from 'zod';
import { PatchFedError } from '../../shared/errors.ts';
import { fedAvg } from './fedavg.ts';
import { fedBN } from './fedbn.ts';
import { DEFAULT_PROXIMAL_MU, fedProx } from './fedprox.ts';
import type { SampleWeightedStrategy } from './sample-weighted.ts';
import { DEFAULT_MAX_SAMPLES_PER_SITE } from './validate-update.ts';

const common = {
  fractionFit: z.number().gt(0).lte(1).default(1),
  minSites: z.number().int().min(1).default(1),
  seed: z.number().int().default(0),
  maxSamplesPerSite: z.number().int().min(1).default(DEFAULT_MAX_SAMPLES_PER_SITE),
};

export const strategyConfigSchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('fedavg'), ...common }).strict(),
  z.object({ name: z.literal('fedprox'), mu: z.number().min(0).default(DEFAULT_PROXIMAL_MU), ...common }).strict(),
  z.object({ name: z.literal('fedbn'), ...common }).strict(),
]);

export type StrategyConfig = z.input<typeof strategyConfigSchema>;

/** Builds the strategy a config names; invalid configs throw PatchFedError naming the field. */
export function createStrategy(config: unknown, source = 'strategy config'): SampleWeightedStrategy {
  const parsed = strategyConfigSchema.safeParse(config);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.') || '(top level)';
    throw new PatchFedError('bad-strategy-config', `${source}: '${field}': ${issue.message}`, { subject: field });
  }
  const c = parsed.data;
  switch (c.name) {
    case 'fedavg':
      return fedAvg(c);
    case 'fedprox':
      return fedProx(c);
    case 'fedbn':
      return fedBN(c);
  }
}
