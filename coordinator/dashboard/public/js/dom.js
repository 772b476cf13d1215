// Element builder that never parses HTML: every string from the snapshot (site ids, reasons,
// messages) becomes a text node or an attribute value, so nothing in the data can run script.

/**
 * @param {string} tag
 * @param {Record<string, unknown> | null} [attrs] plain attributes; `class`, `dataset` and
 *   `style` (an object, applied through CSSOM so the page's CSP allows it) are special.
 * @param {...unknown} children strings/numbers become text; Nodes are appended; null skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (/^on/i.test(name)) throw new Error(`event-handler attribute ${name} is not allowed`);
      if (name === 'class') el.className = String(value);
      else if (name === 'dataset') Object.assign(el.dataset, value);
      else if (name === 'style') Object.assign(el.style, value);
      else el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  appendChildren(el, children);
  return el;
}

export function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `el`. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  appendChildren(el, children);
}

/**
 * Fill a <table>: `headers` is a ready <thead> or a list of header cells (Nodes or strings);
 * `rows` are <tr> elements.
 */
export function table(el, headers, rows, caption) {
  const thead = headers instanceof Node ? headers : h('thead', null, h('tr', null, headers.map((c) => (c instanceof Node ? c : h('th', { scope: 'col' }, c)))));
  const tbody = h('tbody', null, rows);
  setChildren(el, caption ? h('caption', null, caption) : null, thead, tbody);
}

/** A column header cell; `cls` 'num' right-aligns it over numeric columns. */
export function th(text, cls) {
  return h('th', { scope: 'col', class: cls }, text);
}
