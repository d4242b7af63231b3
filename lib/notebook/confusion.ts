/**
 * Confusion matrices: counting (true class, predicted class) pairs, and an SVG picture of one with the
 * counts in the cells, shaded by the share of their row (the recall of each true class on the diagonal).
 */
import { escapeXml } from "./line_plot.ts";

/** counts[t][p]: videos of true class t predicted as p. */
export function confusionMatrix(
  labels: ArrayLike<number>,
  predictions: ArrayLike<number>,
  classes: number,
): number[][] {
  if (labels.length !== predictions.length) {
    throw new RangeError(`${labels.length} labels but ${predictions.length} predictions`);
  }
  const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < labels.length; i++) {
    const [t, p] = [labels[i], predictions[i]];
    for (const [what, c] of [["label", t], ["prediction", p]] as const) {
      if (!(Number.isInteger(c) && c >= 0 && c < classes)) {
        throw new RangeError(`The ${what} of item ${i} is ${c}; classes are 0 .. ${classes - 1}`);
      }
    }
    m[t][p]++;
  }
  return m;
}

/** The matrix as SVG: rows are true classes, columns predictions; the title gives the accuracy. */
export function confusionMatrixSvg(
  counts: number[][],
  names: string[],
  opts: { title?: string } = {},
): string {
  const k = counts.length;
  if (k === 0 || counts.some((r) => r.length !== k) || names.length !== k) {
    throw new RangeError(
      `A confusion matrix must be k x k with k names; got ${k} rows and ${names.length} names`,
    );
  }
  const cell = 36;
  const labelW = 8 + 7 * Math.max(...names.map((n) => n.length));
  const left = labelW + 22;
  const top = 34 + labelW;
  const width = left + k * cell + 12;
  const height = top + k * cell + 12;
  const total = counts.flat().reduce((a, b) => a + b, 0);
  const right = counts.reduce((a, r, i) => a + r[i], 0);
  const title = opts.title ??
    `accuracy ${total ? ((100 * right) / total).toFixed(1) : "-"}% (${right} / ${total})`;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="16" text-anchor="middle" font-size="13">${escapeXml(title)}</text>`,
    `<text x="${left + (k * cell) / 2}" y="30" text-anchor="middle">predicted</text>`,
    `<text x="12" y="${top + (k * cell) / 2}" text-anchor="middle" transform="rotate(-90 12 ${
      top + (k * cell) / 2
    })">true</text>`,
  ];
  for (let t = 0; t < k; t++) {
    const rowSum = counts[t].reduce((a, b) => a + b, 0);
    const y = top + t * cell;
    out.push(`<text x="${left - 4}" y="${y + cell / 2 + 4}" text-anchor="end">${escapeXml(names[t])}</text>`);
    for (let p = 0; p < k; p++) {
      const x = left + p * cell;
      const share = rowSum ? counts[t][p] / rowSum : 0;
      const shade = Math.round(255 * (1 - 0.85 * share));
      const fill = t === p
        ? `rgb(${shade},${Math.round(255 - 0.45 * (255 - shade))},${shade})`
        : `rgb(255,${shade},${shade})`;
      out.push(`<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${fill}" stroke="#999"/>`);
      if (counts[t][p]) {
        out.push(
          `<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" text-anchor="middle" fill="${
            share > 0.6 ? "white" : "black"
          }">${counts[t][p]}</text>`,
        );
      }
    }
  }
  for (let p = 0; p < k; p++) {
    const x = left + p * cell + cell / 2 + 4;
    out.push(
      `<text x="${x}" y="${top - 4}" transform="rotate(-90 ${x} ${top - 4})">${escapeXml(names[p])}</text>`,
    );
  }
  out.push("</svg>");
  return out.join("\n");
}
