/**
 * Line plots as SVG text, small enough to redraw every few steps in a notebook (Deno.jupyter.svg or a
 * display with "image/svg+xml") and to save beside a run. No plotting package: a loss curve needs axes,
 * ticks, a few series and a legend, and drawing them ourselves keeps the output the same everywhere.
 */

/** One curve: y values at x (x defaults to 1, 2, 3, ...); non-finite points break the line. */
export interface Series {
  name: string;
  y: ArrayLike<number>;
  x?: ArrayLike<number>;
  /** A CSS colour (a palette colour by default). */
  color?: string;
}

export interface LinePlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
  /** Logarithmic y axis (values <= 0 are skipped). */
  logY?: boolean;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/** Escapes text for SVG content and attributes. */
export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function formatTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

/** An SVG line plot of the series; throws when no series has a finite point. */
export function linePlotSvg(series: Series[], opts: LinePlotOptions = {}): string {
  const width = opts.width ?? 560;
  const height = opts.height ?? 300;
  const tf = opts.logY ? Math.log10 : (v: number) => v;
  const pts = series.map((s) =>
    Array.from({ length: s.y.length }, (_, i) => [s.x ? s.x[i] : i + 1, s.y[i]] as [number, number])
      .map(([x, y]) => [x, opts.logY && !(y > 0) ? NaN : tf(y)] as [number, number])
  );
  const finite = pts.flat().filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (finite.length === 0) {
    throw new RangeError(
      `A line plot needs a finite point; got series ${series.map((s) => s.name).join(", ")}`,
    );
  }
  let [x0, x1] = [Math.min(...finite.map((p) => p[0])), Math.max(...finite.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...finite.map((p) => p[1])), Math.max(...finite.map((p) => p[1]))];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) {
    [y0, y1] = [y0 - Math.max(1e-6, Math.abs(y0) * 0.1), y1 + Math.max(1e-6, Math.abs(y1) * 0.1)];
  }
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];

  const m = { left: 62, right: 16, top: opts.title ? 28 : 12, bottom: 44 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.top + (1 - (y - y0) / (y1 - y0)) * ph;
  const f = (v: number) => v.toFixed(1);

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  if (opts.title) {
    out.push(
      `<text x="${width / 2}" y="17" text-anchor="middle" font-size="13">${escapeXml(opts.title)}</text>`,
    );
  }
  for (const t of niceTicks(y0, y1)) {
    const y = f(sy(t));
    const label = opts.logY ? formatTick(10 ** t) : formatTick(t);
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 5}" y="${y}" dy="3.5" text-anchor="end">${label}</text>`);
  }
  for (const t of niceTicks(x0, x1, 6)) {
    const x = f(sx(t));
    out.push(`<line x1="${x}" x2="${x}" y1="${m.top + ph}" y2="${m.top + ph + 4}" stroke="#333"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle">${formatTick(t)}</text>`);
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
  );
  if (opts.xLabel) {
    out.push(
      `<text x="${m.left + pw / 2}" y="${height - 6}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`,
    );
  }
  if (opts.yLabel) {
    const cy = m.top + ph / 2;
    out.push(
      `<text x="14" y="${cy}" text-anchor="middle" transform="rotate(-90 14 ${cy})">${
        escapeXml(opts.yLabel)
      }</text>`,
    );
  }
  series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length];
    // A path per finite run, so a NaN step shows as a gap rather than a line through it.
    let d = "";
    let pen = false;
    for (const [x, y] of pts[k]) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${f(sx(x))},${f(sy(y))}`;
      pen = true;
    }
    if (d) out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    if (series.length > 1 || s.name) {
      const ly = m.top + 12 + k * 14;
      out.push(
        `<line x1="${m.left + pw - 110}" x2="${m.left + pw - 92}" y1="${ly - 4}" y2="${
          ly - 4
        }" stroke="${color}" stroke-width="2"/>`,
      );
      out.push(`<text x="${m.left + pw - 88}" y="${ly}">${escapeXml(s.name)}</text>`);
    }
  });
  out.push("</svg>");
  return out.join("\n");
}
