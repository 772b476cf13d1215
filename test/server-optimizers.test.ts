import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../shared/random.ts';
import {
  applyServerStep,
  beginServerStep,
  commitServerStep,
  createServerOptimizerState,
  decodeServerOptimizerState,
  encodeServerOptimizerState,
  type ServerOptimizerSpec,
  type ServerOptimizerState,
} from '../coordinator/strategies/server-optimizers.ts';
import { patchFedErrorCodeOf as codeOf } from './error-fixtures.ts';

/** One whole-vector server round: returns x_{t+1}. */
function round(spec: ServerOptimizerSpec, state: ServerOptimizerState, x: Float32Array, mean: Float32Array): Float32Array {
  const step = beginServerStep(spec, state);
  const out = new Float32Array(x.length);
  applyServerStep(spec, state, step, 0, x, mean, out);
  commitServerStep(state, step);
  return out;
}

// test/reference/server_optimizers_reference.py (numpy 2.4.6, float64): x after rounds 1..5.
const X0 = [0.5, -0.25, 0.125, 1.0, -1.5, 0.0];
const pseudoGradient = (r: number) => X0.map((_, j) => 0.01 * Math.sin(1.3 * j + 0.7 * r) + 0.002 * r * (j % 2 === 0 ? 1 : -1) - 0.004);
const NUMPY: [string, ServerOptimizerSpec, number[][]][] = [
  ['fedadam', { kind: 'fedadam', learningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 }, [
    [0.5021258031012499, -0.24848528584718285, 0.12326113071137729, 0.9944640243688471, -1.502670904611059, 0.0009617702750609747],
    [0.5077451946444058, -0.24893375253990835, 0.11856258894709398, 0.9856562960995949, -1.503609065948522, 0.0028022047299202987],
    [0.5159822823966868, -0.2539600640105058, 0.1115283904661157, 0.9749731257199935, -1.5002509674806914, 0.003144075188585908],
    [0.525553820130851, -0.2628870690218697, 0.10383222826422654, 0.963551437337132, -1.493248548452966, -0.0008982887695368619],
    [0.5349956830526746, -0.27456996921057414, 0.09863776437944517, 0.9520657807278369, -1.4839005737542605, -0.009165746395231463],
  ]],
  ['fedadam with bias correction', { kind: 'fedadam', learningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3, biasCorrection: true }, [
    [0.5021258031012499, -0.24848528584718285, 0.12326113071137729, 0.994464024368847, -1.502670904611059, 0.0009617702750609752],
    [0.5062979753573377, -0.24881825433296983, 0.11977265238726265, 0.9879246403017428, -1.50336745167916, 0.0023282188509862814],
    [0.5115362701785722, -0.2520146876038248, 0.11529932314972462, 0.9811307833274333, -1.5012319020356149, 0.0025456280017708234],
    [0.5170611093486471, -0.25716749254782, 0.11085697965454325, 0.9745380086742251, -1.497189997797849, 0.00021231319324011705],
    [0.5221653989828913, -0.26348329132872367, 0.108048842279316, 0.9683288401596297, -1.492136464321368, -0.004257090632020596],
  ]],
  ['fedyogi', { kind: 'fedyogi', learningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-2 }, [
    [0.5002222185233471, -0.2498453142827516, 0.12482106988502262, 0.9992081509184358, -1.5002871749689164, 9.684301356196455e-5],
    [0.5009168764761385, -0.24989246816200733, 0.12428073483578259, 0.997694302187616, -1.5003897582549957, 0.0002835002012748663],
    [0.5020719515199978, -0.25056041901337234, 0.12339233754743976, 0.9957080376599028, -1.4999574967753917, 0.00031867082427321854],
    [0.5034809540834555, -0.2521514672093505, 0.12240542241117225, 0.9935261147240483, -1.4988801026097356, -0.00018618956451511024],
    [0.5048740627194347, -0.254730587588141, 0.12172659632827428, 0.9913141834998986, -1.4972892252492125, -0.0015970263414683884],
  ]],
  ['fedadagrad', { kind: 'fedadagrad', learningRate: 0.05, beta1: 0, beta2: 0.99, tau: 1e-2 }, [
    [0.5106057751678796, -0.24244414514570584, 0.11632554742732891, 0.9723456687182156, -1.5133275728039697, 0.004797128884541925],
    [0.5305334757193714, -0.25126946620654156, 0.09990274578348252, 0.9489661927618597, -1.506228748840037, 0.00967834159390758],
    [0.5494096399228438, -0.27472373981716536, 0.08409339193190425, 0.9321326104981659, -1.4859542571507929, 0.003266761248981948],
    [0.5618276967010566, -0.3025712483980834, 0.076854298256652, 0.9219667805481756, -1.4636309531343397, -0.018090088085499577],
    [0.5660160191936304, -0.32888364345303356, 0.08480052555408492, 0.9156273237807167, -1.4453838293396428, -0.04613016297207566],
  ]],
  ['fedavgm', { kind: 'fedavgm', learningRate: 1, momentum: 0.9 }, [
    [0.5044421768723769, -0.24690702573174317, 0.12142254305856752, 0.9840630899636653, -1.5057387666483024, 0.0019366786384915312],
    [0.5182946333574008, -0.24784955008797374, 0.110634806858199, 0.9533971965087251, -1.5077882429966407, 0.005669102831531629],
    [0.5413939378604109, -0.26125323302884956, 0.09292661170222632, 0.9130037374172897, -1.4991284055038596, 0.00637225558400885],
    [0.5695331934146791, -0.2934993187862819, 0.07326159118629105, 0.8686981234411638, -1.4774409692941228, -0.0037503627036910344],
    [0.5973506911366243, -0.3464824420563294, 0.05974144767922834, 0.8238101518207668, -1.445292584404538, -0.03230093027151463],
  ]],
];

/**
 * Independent reference of the update rules (Reddi et al. 2021, Alg. 2; FedAvgM), written
 * differently on purpose: plain number arrays, float64 state, whole vectors, map/closures.
 */
function referenceTrajectory(spec: ServerOptimizerSpec, x0: number[], means: (x: number[], t: number) => number[], rounds: number): number[][] {
  let x = [...x0];
  let m = x0.map(() => 0);
  let v = x0.map(() => (spec.kind === 'fedavgm' ? 0 : spec.tau ** 2));
  const out: number[][] = [];
  for (let t = 1; t <= rounds; t++) {
    const mean = means(x, t);
    const delta = mean.map((mu, j) => mu - (x[j] ?? 0));
    if (spec.kind === 'fedavgm') {
      m = m.map((mj, j) => spec.momentum * mj + (delta[j] ?? 0));
      x = x.map((xj, j) => xj + spec.learningRate * (m[j] ?? 0));
    } else {
      const { beta1, beta2, tau } = spec;
      m = m.map((mj, j) => beta1 * mj + (1 - beta1) * (delta[j] ?? 0));
      v = v.map((vj, j) => {
        const d2 = (delta[j] ?? 0) ** 2;
        if (spec.kind === 'fedadam') return beta2 * vj + (1 - beta2) * d2;
        if (spec.kind === 'fedyogi') return vj - (1 - beta2) * d2 * Math.sign(vj - d2);
        return vj + d2;
      });
      const eta = spec.biasCorrection ? (spec.learningRate * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t) : spec.learningRate;
      x = x.map((xj, j) => xj + (eta * (m[j] ?? 0)) / (Math.sqrt(v[j] ?? 0) + tau));
    }
    out.push(x);
  }
  return out;
}

describe('server optimisers (Reddi et al. 2021) against reference implementations', () => {
  it.each(NUMPY)('%s follows the numpy reference trajectory to ≤ 1e-6', (_name, spec, want) => {
    const state = createServerOptimizerState(spec, X0.length);
    let x: Float32Array = Float32Array.from(X0);
    want.forEach((expected, r) => {
      const g = pseudoGradient(r + 1);
      x = round(spec, state, x, Float32Array.from(x, (xj, j) => xj + (g[j] ?? 0)));
      expected.forEach((e, j) => expect(Math.abs((x[j] ?? NaN) - e)).toBeLessThanOrEqual(1e-6));
    });
    expect(state.step).toBe(5);
  });

  it.each(NUMPY.map(([name, spec]) => [name, spec] as const))('%s matches the independent reference on 2000 random parameters over 8 rounds (≤ 1e-6)', (_name, spec) => {
    const rng = mulberry32(77);
    const d = 2000;
    const x0 = Array.from({ length: d }, () => Math.fround((rng() * 2 - 1) * 0.5));
    // Each round's aggregated model: the current global plus a fixed random pseudo-gradient.
    const grads = Array.from({ length: 8 }, () => Array.from({ length: d }, () => (rng() * 2 - 1) * 0.02));
    const meanFor = (x: ArrayLike<number>, t: number) => Array.from({ length: d }, (_, j) => Math.fround((x[j] ?? 0) + (grads[t - 1]?.[j] ?? 0)));
    const state = createServerOptimizerState(spec, d);
    let x: Float32Array = Float32Array.from(x0);
    const ours: Float32Array[] = [];
    for (let t = 1; t <= 8; t++) {
      x = round(spec, state, x, Float32Array.from(meanFor(x, t)));
      ours.push(x);
    }
    // The reference sees the same aggregated models (computed from our trajectory), so a bug in
    // one round cannot hide behind a shifted input.
    const refX = referenceTrajectory(spec, x0, (_x, t) => meanFor(t === 1 ? x0 : (ours[t - 2] ?? []), t), 8);
    let worst = 0;
    refX.forEach((xr, r) => xr.forEach((e, j) => (worst = Math.max(worst, Math.abs((ours[r]?.[j] ?? NaN) - e)))));
    expect(worst).toBeLessThanOrEqual(1e-6);
  });
});

describe('server optimiser state', () => {
  const spec: ServerOptimizerSpec = { kind: 'fedyogi', learningRate: 0.02, beta1: 0.9, beta2: 0.99, tau: 1e-3 };

  it('slice-by-slice steps equal whole-vector steps bit for bit', () => {
    const rng = mulberry32(4);
    const d = 1000;
    const x = Float32Array.from({ length: d }, () => rng() - 0.5);
    const mean = Float32Array.from(x, (v) => v + (rng() - 0.5) * 0.01);
    const whole = createServerOptimizerState(spec, d);
    const sliced = createServerOptimizerState(spec, d);
    const a = round(spec, whole, x, mean);
    const step = beginServerStep(spec, sliced);
    const b = new Float32Array(d);
    for (const [s, e] of [[0, 333], [333, 700], [700, 1000]] as const) applyServerStep(spec, sliced, step, s, x.subarray(s, e), mean.subarray(s, e), b.subarray(s, e));
    commitServerStep(sliced, step);
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    expect(Buffer.from(sliced.v.buffer).equals(Buffer.from(whole.v.buffer))).toBe(true);
  });

  it('a saved and restored state continues exactly like an uninterrupted run', () => {
    for (const s of NUMPY.map(([, sp]) => sp)) {
      const rng = mulberry32(12);
      const d = 300;
      const means = Array.from({ length: 6 }, () => Float32Array.from({ length: d }, () => rng() - 0.5));
      const x0 = new Float32Array(d);
      const straight = createServerOptimizerState(s, d);
      let x: Float32Array = x0;
      for (const m of means) x = round(s, straight, x, m);
      let state = createServerOptimizerState(s, d);
      let y: Float32Array = x0;
      for (const m of means.slice(0, 3)) y = round(s, state, y, m);
      state = decodeServerOptimizerState(encodeServerOptimizerState(state));
      for (const m of means.slice(3)) y = round(s, state, y, m);
      expect(Buffer.from(y.buffer).equals(Buffer.from(x.buffer))).toBe(true);
      expect(state.step).toBe(6);
    }
  });

  it('FedAvgM with learning rate 1 and no momentum is plain FedAvg (up to the float32 momentum buffer)', () => {
    const s: ServerOptimizerSpec = { kind: 'fedavgm', learningRate: 1, momentum: 0 };
    const state = createServerOptimizerState(s, 4);
    const x = Float32Array.from([1, 2, 3, 4]);
    const mean = Float32Array.from([0.1, -2, 3.5, 1e-3]);
    const out = round(s, state, x, mean);
    // The pseudo-gradient is stored in float32: off by at most half an ulp of |mean − x|, plus the output rounding.
    out.forEach((o, j) => expect(Math.abs(o - (mean[j] ?? 0))).toBeLessThanOrEqual(2 ** -24 * (Math.abs((mean[j] ?? 0) - (x[j] ?? 0)) + Math.abs(mean[j] ?? 0))));
  });

  it('refuses bad settings, mismatched state and corrupt state bytes', () => {
    expect(codeOf(() => createServerOptimizerState({ kind: 'fedadam', learningRate: 0, beta1: 0.9, beta2: 0.99, tau: 1e-3 }, 3))).toBe('server-optimizer');
    expect(codeOf(() => createServerOptimizerState({ kind: 'fedavgm', learningRate: 1, momentum: 1 }, 3))).toBe('server-optimizer');
    const state = createServerOptimizerState(spec, 3);
    expect(codeOf(() => beginServerStep({ kind: 'fedadam', learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 }, state))).toBe('server-optimizer');
    const step = beginServerStep(spec, state);
    expect(codeOf(() => applyServerStep(spec, state, step, 2, new Float32Array(2), new Float32Array(2), new Float32Array(2)))).toBe('server-optimizer');
    const bytes = encodeServerOptimizerState(state);
    expect(codeOf(() => decodeServerOptimizerState(bytes.subarray(0, bytes.length - 4)))).toBe('server-optimizer');
    const badMagic = Uint8Array.from(bytes);
    badMagic[0] = 0;
    expect(codeOf(() => decodeServerOptimizerState(badMagic))).toBe('server-optimizer');
  });
});
