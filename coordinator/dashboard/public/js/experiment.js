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
  setChildren(el, facts.map(([k, v]) => h('div', { class: 'fact' }, h('dt', null, k), h('dd', null, v))));
}
