// SPDX-License-Identifier: MIT
// Small hand-written SVG charts: horizontal bars, columns, a stacked share
// bar and a line chart. Every chart is an <svg role="img"> with an
// aria-label that states the values, so a screen reader reads the numbers
// rather than the picture. Labels are set with textContent only. Colours
// come from CSS classes (console.css), never from style attributes.

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text != null) e.textContent = String(text);
  return e;
}

function svgRoot(width, height, label) {
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label, class: 'chart', preserveAspectRatio: 'xMinYMin meet' });
  svg.append(el('title', {}, label));
  return svg;
}

function empty(container, noData) {
  const p = document.createElement('p');
  p.className = 'chart-empty';
  p.textContent = noData;
  container.replaceChildren(p);
}

const fmt = (v, f) => (f ? f(v) : String(v));

/**
 * Horizontal bars: items [{label, value, cls?}], one row each, the value
 * written after the bar.
 */
export function barChart(container, items, { title, format, noData = '—' } = {}) {
  if (!items.length || items.every((i) => !i.value)) return empty(container, noData);
  const rowH = 26;
  const labelW = 150;
  const width = 460;
  const barMax = width - labelW - 70;
  const max = Math.max(...items.map((i) => i.value), 1);
  const label = `${title}: ${items.map((i) => `${i.label} ${fmt(i.value, format)}`).join(', ')}`;
  const svg = svgRoot(width, items.length * rowH + 4, label);
  items.forEach((it, n) => {
    const y = n * rowH + 2;
    const w = Math.max(it.value > 0 ? 2 : 0, Math.round((it.value / max) * barMax));
    svg.append(el('text', { x: labelW - 8, y: y + rowH / 2 + 4, 'text-anchor': 'end', class: 'chart-label' }, it.label));
    svg.append(el('rect', { x: labelW, y: y + 4, width: w, height: rowH - 9, rx: 3, class: `chart-bar ${it.cls || ''}` }));
    svg.append(el('text', { x: labelW + w + 6, y: y + rowH / 2 + 4, class: 'chart-value' }, fmt(it.value, format)));
  });
  container.replaceChildren(svg);
}

/** Vertical columns (a distribution, e.g. CSAT 1..5): items [{label, value, cls?}]. */
export function columnChart(container, items, { title, format, noData = '—' } = {}) {
  if (!items.length || items.every((i) => !i.value)) return empty(container, noData);
  const width = 460;
  const height = 190;
  const top = 18;
  const bottom = 24;
  const plotH = height - top - bottom;
  const slot = width / items.length;
  const colW = Math.min(56, slot * 0.6);
  const max = Math.max(...items.map((i) => i.value), 1);
  const label = `${title}: ${items.map((i) => `${i.label}: ${fmt(i.value, format)}`).join(', ')}`;
  const svg = svgRoot(width, height, label);
  svg.append(el('line', { x1: 0, x2: width, y1: top + plotH + 0.5, y2: top + plotH + 0.5, class: 'chart-axis' }));
  items.forEach((it, n) => {
    const h = Math.round((it.value / max) * plotH);
    const x = n * slot + (slot - colW) / 2;
    svg.append(el('rect', { x, y: top + plotH - h, width: colW, height: h, rx: 3, class: `chart-bar ${it.cls || ''}` }));
    svg.append(el('text', { x: x + colW / 2, y: top + plotH - h - 5, 'text-anchor': 'middle', class: 'chart-value' }, fmt(it.value, format)));
    svg.append(el('text', { x: x + colW / 2, y: height - 6, 'text-anchor': 'middle', class: 'chart-label' }, it.label));
  });
  container.replaceChildren(svg);
}

/** One bar split in parts (shares of a whole): parts [{label, value, cls}], with a legend. */
export function shareBar(container, parts, { title, format, noData = '—' } = {}) {
  const total = parts.reduce((a, p) => a + p.value, 0);
  if (!total) return empty(container, noData);
  const width = 460;
  const svg = svgRoot(width, 70, `${title}: ${parts.map((p) => `${p.label} ${fmt(p.value, format)}`).join(', ')}`);
  let x = 0;
  parts.forEach((p) => {
    const w = (p.value / total) * width;
    svg.append(el('rect', { x, y: 4, width: Math.max(0, w), height: 26, class: `chart-bar ${p.cls || ''}` }));
    x += w;
  });
  let lx = 0;
  parts.forEach((p) => {
    svg.append(el('rect', { x: lx, y: 44, width: 12, height: 12, rx: 2, class: `chart-bar ${p.cls || ''}` }));
    const text = `${p.label}: ${fmt(p.value, format)} (${Math.round((p.value / total) * 100)}%)`;
    svg.append(el('text', { x: lx + 18, y: 54, class: 'chart-label' }, text));
    lx += 30 + text.length * 7;
  });
  container.replaceChildren(svg);
}

/**
 * Lines over x: series [{label, cls, points: [{x: Number, y: Number|null}]}],
 * xLabel(x) for the axis ticks (first, middle, last). A null y is a gap.
 */
export function lineChart(container, series, { title, format, xLabel = String, noData = '—', height = 170 } = {}) {
  const all = series.flatMap((s) => s.points.filter((p) => p.y != null));
  if (!all.length) return empty(container, noData);
  const width = 460;
  const left = 44;
  const right = 8;
  const top = series.length > 1 ? 22 : 10;
  const bottom = 22;
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const yMax = Math.max(...all.map((p) => p.y), 1);
  const px = (x) => left + (x1 === x0 ? (width - left - right) / 2 : ((x - x0) / (x1 - x0)) * (width - left - right));
  const py = (y) => top + (1 - y / yMax) * (height - top - bottom);
  const last = series.map((s) => {
    const pts = s.points.filter((p) => p.y != null);
    return pts.length ? `${s.label} ${fmt(pts[pts.length - 1].y, format)}` : s.label;
  });
  const svg = svgRoot(width, height, `${title}: ${last.join(', ')}`);
  for (const frac of [0, 0.5, 1]) {
    const y = py(yMax * frac);
    svg.append(el('line', { x1: left, x2: width - right, y1: y, y2: y, class: frac ? 'chart-grid' : 'chart-axis' }));
    svg.append(el('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'chart-label' }, fmt(Math.round(yMax * frac * 10) / 10, format)));
  }
  const ticks = [...new Set([x0, xs[Math.floor(xs.length / 2)], x1])];
  ticks.forEach((x, n) => {
    const anchor = n === 0 ? 'start' : n === ticks.length - 1 ? 'end' : 'middle';
    svg.append(el('text', { x: px(x), y: height - 6, 'text-anchor': anchor, class: 'chart-label' }, xLabel(x)));
  });
  for (const s of series) {
    let d = '';
    let pen = false;
    for (const p of s.points) {
      if (p.y == null) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)} `;
      pen = true;
    }
    svg.append(el('path', { d: d.trim(), class: `chart-line ${s.cls || ''}` }));
    const pts = s.points.filter((p) => p.y != null);
    if (pts.length === 1 || pts.length < 20) {
      for (const p of pts) svg.append(el('circle', { cx: px(p.x), cy: py(p.y), r: 2.5, class: `chart-dot ${s.cls || ''}` }));
    }
  }
  if (series.length > 1) {
    let lx = left;
    for (const s of series) {
      svg.append(el('rect', { x: lx, y: 4, width: 10, height: 3, class: `chart-key ${s.cls || ''}` }));
      svg.append(el('text', { x: lx + 14, y: 10, class: 'chart-label' }, s.label));
      lx += 30 + s.label.length * 7;
    }
  }
  container.replaceChildren(svg);
}
