// Display formats. Every function accepts null/undefined and shows an em dash for "not known".

const DASH = '—';

export function dice(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(3) : DASH;
}

export function loss(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return DASH;
  return Math.abs(v) >= 1000 ? v.toExponential(2) : v.toPrecision(4);
}

export function bytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}

export function megabytes(n) {
  return typeof n === 'number' && Number.isFinite(n) ? n / (1024 * 1024) : null;
}

export function shape(dims) {
  return Array.isArray(dims) && dims.length > 0 ? dims.join('×') : DASH;
}

export function memoryMB(mb) {
  if (typeof mb !== 'number' || !Number.isFinite(mb)) return DASH;
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GiB` : `${Math.round(mb)} MiB`;
}

export function duration(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return DASH;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** m:ss or h:mm:ss of a non-negative duration. */
export function countdown(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

export function relative(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return DASH;
  const s = Math.round(ms / 1000);
  if (s < 5) return 'just now';
  if (s < 90) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 36) return `${h} h ago`;
  return `${Math.round(h / 24)} d ago`;
}

function pad(n) {
  return String(n).padStart(2, '0');
}

export function time(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? DASH : `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** HH:MM:SS today; MM-DD HH:MM:SS on other days. */
export function timeOrDate(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return DASH;
  const today = new Date();
  const sameDay = d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() && d.getDate() === today.getDate();
  return sameDay ? time(iso) : `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time(iso)}`;
}

export function dateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return DASH;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function percent(done, total) {
  if (typeof done !== 'number' || typeof total !== 'number' || !(total > 0)) return 0;
  return Math.min(100, Math.max(0, (done / total) * 100));
}
