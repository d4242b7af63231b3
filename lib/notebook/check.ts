/**
 * Checks an executed notebook (nbformat 4 JSON, as `jupyter nbconvert --execute` writes it): every code
 * cell ran, no cell has an error output, the cells named in `expect` hold at least the outputs asked for,
 * and a training cell's "before:" and "after:" memory lines agree when both arrived (a run gives back
 * all it took; the quickstart's cells also throw when it does not). Text
 * outputs (SVG, Markdown, plain text) may be stored as one string or as a list of lines.
 */

interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, string | string[] | object>;
  ename?: string;
  evalue?: string;
}

interface Cell {
  id?: string;
  cell_type: string;
  execution_count?: number | null;
  outputs?: Output[];
}

export interface NotebookJson {
  cells: Cell[];
}

/** Cell id -> mime type -> the least number of outputs of that type. */
export type OutputExpectations = Record<string, Record<string, number>>;

const joined = (t: unknown) => (Array.isArray(t) ? t.join("") : typeof t === "string" ? t : "");

/** The text a cell printed or displayed as plain text, in order. */
function cellText(c: Cell): string {
  return (c.outputs ?? []).map((o) =>
    o.output_type === "stream" ? joined(o.text) : `${joined(o.data?.["text/plain"])}\n`
  ).join("");
}

/** The problems found (empty when the notebook passes). */
export function checkExecutedNotebook(nb: NotebookJson, expect: OutputExpectations): string[] {
  const problems: string[] = [];
  const code = nb.cells.filter((c) => c.cell_type === "code");
  if (code.length === 0) problems.push("the notebook has no code cells");
  code.forEach((c, i) => {
    const name = c.id ?? `code cell ${i + 1}`;
    if (c.execution_count == null) problems.push(`${name} did not run (no execution count)`);
    for (const o of c.outputs ?? []) {
      if (o.output_type === "error") problems.push(`${name} failed: ${o.ename}: ${o.evalue}`);
    }
    const text = cellText(c);
    const before = text.match(/^before: (.*)$/m)?.[1];
    const after = text.match(/^after: (.*)$/m)?.[1];
    if (before !== undefined && after !== undefined && after !== before) {
      problems.push(`${name} did not give its memory back: before "${before}", after "${after}"`);
    }
  });
  for (const [id, mimes] of Object.entries(expect)) {
    const cell = code.find((c) => c.id === id);
    if (!cell) {
      problems.push(`no code cell with id "${id}"`);
      continue;
    }
    for (const [mime, least] of Object.entries(mimes)) {
      const n = (cell.outputs ?? []).filter((o) => joined(o.data?.[mime]) !== "").length;
      if (n < least) problems.push(`${id} has ${n} ${mime} outputs, expected at least ${least}`);
    }
  }
  return problems;
}
