// Starts the snapshot request while the page's modules and chart library still load (a classic
// async script runs as soon as it arrives; main.js would only fetch after every module ran).
// main.js awaits the promise (and reports its failure), or fetches itself if this has not run.
const request = fetch('/api/snapshot', { credentials: 'same-origin', cache: 'no-store' });
request.catch(() => {}); // handled in main.js; not an "unhandled rejection" meanwhile
globalThis.__patchfedSnapshot = request;
