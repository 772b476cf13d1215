/**
 * The experiment's privacy ledger: every DP round is one Poisson-subsampled Gaussian mechanism
 * with sampling rate q = (sites selected) / (sites eligible) and noise multiplier z (site-level
 * DP-FedAvg, McMahan et al. 2018, §3, where q is the user sampling probability). The ledger is the
 * list of rounds, grouped like Opacus's history into (q, z, count) runs; ε(δ) is recomputed from
 * it by rdp.ts, so a restored ledger reports bit-identical ε.
 *
 * Sampling caveat, as in McMahan et al. 2018: the amplification by q assumes each site takes part
 * independently with probability q (Poisson sampling). PatchFed's scheduler draws a fixed number
 * of sites (coordinator/strategies/sampling.ts); with every site in every round (q = 1, the usual
 * cross-silo case) there is no amplification and the bound is exact for either scheme.
 */
import { PatchFedError } from '../../shared/errors.ts';
import { computeRdp, DEFAULT_RDP_ORDERS, epsilonFromRdp, type EpsilonAtOrder, type EpsilonConversion } from './rdp.ts';

export interface DpRound {
  /** Probability with which each site takes part in the round, in (0, 1]. */
  samplingRate: number;
  /** z: noise standard deviation over the clip norm. */
  noiseMultiplier: number;
}

export interface LedgerEntry extends DpRound {
  rounds: number;
}

export interface AccountantState {
  version: 1;
  orders: number[];
  ledger: LedgerEntry[];
}

export interface PrivacyBudget {
  epsilon: number;
  delta: number;
}

function checkRound(r: DpRound): void {
  if (!(Number.isFinite(r.samplingRate) && r.samplingRate > 0 && r.samplingRate <= 1)) {
    throw new PatchFedError('dp-accountant', `Privacy accountant: the sampling rate must be in (0, 1], got ${String(r.samplingRate)}.`);
  }
  if (!(Number.isFinite(r.noiseMultiplier) && r.noiseMultiplier > 0)) {
    throw new PatchFedError('dp-accountant', `Privacy accountant: the noise multiplier must be a positive number, got ${String(r.noiseMultiplier)}.`);
  }
}

function checkDelta(delta: number): void {
  if (!(Number.isFinite(delta) && delta > 0 && delta < 1)) throw new PatchFedError('dp-accountant', `Privacy accountant: δ must be in (0, 1), got ${String(delta)}.`);
}

export class RdpAccountant {
  readonly orders: readonly number[];
  private readonly ledger: LedgerEntry[] = [];
  private rdp: number[];
  private readonly cache = new Map<string, number[]>();

  constructor(orders: readonly number[] = DEFAULT_RDP_ORDERS) {
    if (orders.length === 0 || orders.some((a) => !(a > 1))) throw new PatchFedError('dp-accountant', 'Privacy accountant: RDP orders must be a non-empty list of numbers > 1.');
    this.orders = [...orders];
    this.rdp = this.orders.map(() => 0);
  }

  /** Records `rounds` rounds of the same mechanism. */
  compose(round: DpRound, rounds = 1): void {
    checkRound(round);
    if (!(Number.isSafeInteger(rounds) && rounds >= 1)) throw new PatchFedError('dp-accountant', `Privacy accountant: the number of rounds must be a positive integer, got ${String(rounds)}.`);
    const last = this.ledger[this.ledger.length - 1];
    if (last && last.samplingRate === round.samplingRate && last.noiseMultiplier === round.noiseMultiplier) last.rounds += rounds;
    else this.ledger.push({ samplingRate: round.samplingRate, noiseMultiplier: round.noiseMultiplier, rounds });
    // Always Σ_entries rounds·ε₁(α) from the ledger: the same ledger gives bit-identical RDP
    // whether it was built round by round or restored from a checkpoint.
    this.rdp = this.orders.map((_, k) => this.ledger.reduce((sum, e) => sum + e.rounds * (this.oneRound(e)[k] ?? 0), 0));
  }

  /** ε₁(α) of one round of `r`, cached: a run of identical rounds costs one RDP evaluation. */
  private oneRound(r: DpRound): number[] {
    const key = `${r.samplingRate}:${r.noiseMultiplier}`;
    let rdp = this.cache.get(key);
    if (!rdp) {
      rdp = computeRdp(r.samplingRate, r.noiseMultiplier, 1, this.orders);
      this.cache.set(key, rdp);
    }
    return rdp;
  }

  get roundsAccounted(): number {
    return this.ledger.reduce((n, e) => n + e.rounds, 0);
  }

  /** ε spent so far at δ (0 before any round). */
  epsilon(delta: number, conversion: EpsilonConversion = 'improved'): EpsilonAtOrder {
    checkDelta(delta);
    if (this.ledger.length === 0) return { epsilon: 0, order: this.orders[0] ?? NaN };
    return epsilonFromRdp(this.orders, this.rdp, delta, conversion);
  }

  /** ε after one more round of `next`, without recording it. */
  epsilonAfter(next: DpRound, delta: number, conversion: EpsilonConversion = 'improved'): EpsilonAtOrder {
    checkRound(next);
    checkDelta(delta);
    const add = this.oneRound(next);
    return epsilonFromRdp(this.orders, this.rdp.map((r, k) => r + (add[k] ?? 0)), delta, conversion);
  }

  toJSON(): AccountantState {
    return { version: 1, orders: [...this.orders], ledger: this.ledger.map((e) => ({ ...e })) };
  }

  /** Rebuilds an accountant from its saved state, recomputing RDP from the ledger. */
  static fromJSON(state: AccountantState): RdpAccountant {
    if (state === null || typeof state !== 'object' || state.version !== 1 || !Array.isArray(state.orders) || !Array.isArray(state.ledger)) {
      throw new PatchFedError('dp-accountant', 'Privacy accountant: the saved state is not a version-1 accountant state.');
    }
    const acc = new RdpAccountant(state.orders);
    for (const e of state.ledger) acc.compose({ samplingRate: e.samplingRate, noiseMultiplier: e.noiseMultiplier }, e.rounds);
    return acc;
  }
}

/** ε of a single round on its own (what "ε per round" means in a report; rounds compose sub-additively). */
export function singleRoundEpsilon(round: DpRound, delta: number, orders: readonly number[] = DEFAULT_RDP_ORDERS): EpsilonAtOrder {
  checkRound(round);
  checkDelta(delta);
  return epsilonFromRdp(orders, computeRdp(round.samplingRate, round.noiseMultiplier, 1, orders), delta);
}

export interface BudgetCheck {
  /** true when running `next` would take ε above the budget: the experiment must stop before it. */
  exceeds: boolean;
  epsilonNow: number;
  epsilonAfter: number;
}

/** Whether one more round of `next` stays within the configured (ε, δ) budget. */
export function checkBudget(accountant: RdpAccountant, budget: PrivacyBudget, next: DpRound): BudgetCheck {
  if (!(Number.isFinite(budget.epsilon) && budget.epsilon > 0)) throw new PatchFedError('dp-accountant', `Privacy budget: ε must be a positive number, got ${String(budget.epsilon)}.`);
  const epsilonNow = accountant.epsilon(budget.delta).epsilon;
  const epsilonAfter = accountant.epsilonAfter(next, budget.delta).epsilon;
  return { exceeds: epsilonAfter > budget.epsilon, epsilonNow, epsilonAfter };
}
