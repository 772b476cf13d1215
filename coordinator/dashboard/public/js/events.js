// Event log: snapshot events merged with live pushes, shown newest first.
import { h, setChildren } from './dom.js';
import * as fmt from './format.js';

export const MAX_EVENTS = 500;

export function eventKey(e) {
  return `${e.time}\u0000${e.kind}\u0000${e.site ?? ''}\u0000${e.message}`;
}

/**
 * Union of the snapshot's events and live ones (a live event may or may not be in the next
 * snapshot), ordered by time, newest last, capped.
 */
export function mergeEvents(snapshotEvents, liveEvents) {
  const byKey = new Map();
  for (const e of snapshotEvents) byKey.set(eventKey(e), e);
  for (const e of liveEvents) if (!byKey.has(eventKey(e))) byKey.set(eventKey(e), e);
  const all = [...byKey.values()].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  return all.slice(Math.max(0, all.length - MAX_EVENTS));
}

/** @param {HTMLOListElement} el */
export function renderEvents(el, events) {
  const items = [];
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    items.push(
      h(
        'li',
        { dataset: { kind: String(e.kind) } },
        h('time', { datetime: e.time, title: e.time }, fmt.timeOrDate(e.time)),
        h('span', { class: 'kind' }, e.kind),
        e.site ? h('span', { class: 'site-id' }, e.site) : null,
        h('span', { class: 'message' }, e.message),
      ),
    );
  }
  if (items.length === 0) items.push(h('li', { class: 'muted' }, 'No events yet.'));
  setChildren(el, items);
}
