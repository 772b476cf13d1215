// Experiment configuration in effect.
import { h, setChildren } from './dom.js';
import * as fmt from './format.js';

/** @param {HTMLDListElement} el */
export function renderExperiment(el, snapshot) {
  const e = snapshot.experiment;
  const model = `${e.preset ? `${e.preset}, ` : ''}base ${e.base}, depth ${e.depth}, ${e.norm} norm`;
  const facts = [
    ['Experiment', e.id],
    ['Task', e.task],
    ['Mode', e.mode],
    ['Model', model],
    ['Strategy', e.strategy],
    ['Rounds', `${snapshot.rounds.length} of ${e.rounds} done`],
    ['Minimum sites', e.minSites],
    ['Local steps', e.localSteps],
    ['Round deadline', fmt.duration(e.roundDeadlineSeconds * 1000)],
    ['Labels', e.labels.join(', ')],
    ['Started', fmt.dateTime(e.startedAt)],
  ];
  // Differential privacy: ε spent so far (RDP accountant) against the budget, and per round.
  const p = e.privacy;
  if (p) {
    const budget = p.epsilonBudget === null ? 'no budget' : `budget ${p.epsilonBudget}`;
    facts.push(['Privacy', `${p.mode} DP (z ${p.noiseMultiplier}, C ${p.clipNorm}): ε ${p.epsilon.toPrecision(3)} at δ ${p.delta}, ${budget}`]);
    facts.push(['ε per round', p.perRound.map((r) => `${r.round}: +${r.epsilon.toPrecision(3)} → ${r.epsilonSpent.toPrecision(3)}`).join(' · ')]);
  }
  setChildren(el, facts.map(([k, v]) => h('div', { class: 'fact' }, h('dt', null, k), h('dd', null, v))));
}
