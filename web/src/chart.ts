// Memory per backend as an inline SVG bar chart (no library): one row per backend, the bar's
// length its size relative to the largest, the filled part its resident memory.
import { svg, formatSize } from './dom';

export interface ChartRow {
  id: string;
  type: string;
  size: number;
  resident?: number;
}

const ROW = 26;
const LABEL = 150;
const WIDTH = 640;
const BAR = WIDTH - LABEL - 150;

export function memoryChart(rows: ChartRow[]): SVGElement {
  const height = Math.max(1, rows.length) * ROW + 8;
  const max = Math.max(1, ...rows.map((r) => r.size));
  // Drawn at its natural size (and shrunk on narrow screens by CSS), so text stays legible.
  const root = svg('svg', { viewBox: `0 0 ${WIDTH} ${height}`, width: WIDTH, height, class: 'chart', role: 'img', 'aria-label': 'Memory per backend', 'data-testid': 'memory-chart' });
  if (rows.length === 0) {
    root.append(svg('text', { x: 8, y: 20, class: 'muted' }, 'No memory backends.'));
    return root;
  }
  rows.forEach((r, i) => {
    const y = 4 + i * ROW;
    const w = Math.max(2, (r.size / max) * BAR);
    const res = r.resident === undefined ? 0 : Math.min(w, (r.resident / max) * BAR);
    const pct = r.size > 0 && r.resident !== undefined ? ` (${Math.round((100 * r.resident) / r.size)}%)` : '';
    root.append(
      svg(
        'g',
        { 'data-backend': r.id },
        svg('title', {}, `${r.id} (${r.type}): ${formatSize(r.size)}, resident ${r.resident === undefined ? '?' : formatSize(r.resident)}`),
        svg('text', { x: 4, y: y + 16, class: 'label' }, r.id.length > 20 ? r.id.slice(0, 19) + '…' : r.id),
        svg('rect', { x: LABEL, y: y + 3, width: w, height: ROW - 8, rx: 3, class: 'bar-size' }),
        svg('rect', { x: LABEL, y: y + 3, width: res, height: ROW - 8, rx: 3, class: 'bar-resident' }),
        svg('text', { x: LABEL + w + 6, y: y + 16, class: 'value' }, `${r.resident === undefined ? '?' : formatSize(r.resident)} / ${formatSize(r.size)}${pct}`),
      ),
    );
  });
  return root;
}
