import { describe, expect, it } from 'vitest';
import { privacyOf } from '../site-agent/export/model-card.ts';
import type { ExperimentDescription } from '../shared/protocol/messages.ts';

// Only the fields privacyOf reads; the rest of a signed description plays no part here.
const describeExperiment = (strategy: object, aggregation?: object) => ({ strategy, aggregation }) as unknown as ExperimentDescription;
const dp = { mode: 'central', noiseMultiplier: 1, clipNorm: 0.5, delta: 1e-5 };

describe('model card: privacy', () => {
  it("states the DP settings with the ε the checkpoint's ledger recorded", () => {
    const p = privacyOf(describeExperiment({ name: 'fedavg', dp }), { privacy: { epsilon: 3.21, delta: 1e-5, rounds: 4, mode: 'central' } });
    expect(p).toEqual({ differentialPrivacy: { ...dp, spent: { epsilon: 3.21, delta: 1e-5, rounds: 4 } } });
  });

  it('says so when the checkpoint carries no ledger, and reports secure aggregation', () => {
    const p = privacyOf(describeExperiment({ name: 'fedavg', dp }, { secure: { threshold: 3 } }), {});
    expect(p).toEqual({ differentialPrivacy: { ...dp, spent: 'not recorded in this checkpoint' }, secureAggregation: { threshold: 3 } });
  });

  it('is null without DP or secure aggregation, and for local training', () => {
    expect(privacyOf(describeExperiment({ name: 'fedavg' }), { privacy: { epsilon: 1, delta: 1e-5, rounds: 1 } })).toBeNull();
    expect(privacyOf(undefined, undefined)).toBeNull();
  });
});
