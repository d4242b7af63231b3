/**
 * The build-time rewrite that turns a cuda/gpu source into host C++ for the simulator: kernel launches
 * `k<<<grid, block, smem, stream>>>(args)` become `vsim::launch(k, "k", grid, block, smem, stream)(args)`,
 * `__shared__` declarations become references into the simulated block's shared memory, and kernels
 * with `__launch_bounds__` check their block size first. Nothing else changes: the kernel bodies compile
 * as they are.
 */

/** Index of the bracket that closes the one at `open` (the same kind), or -1. */
function matching(src: string, open: number, inc: string, dec: string): number {
  let depth = 0;
  for (let i = open; i < src.length; i++) {
    if (src[i] === inc) depth++;
    else if (src[i] === dec && --depth === 0) return i;
  }
  return -1;
}

/** Start of the kernel expression that ends just before `end` (an identifier path, maybe templated). */
function kernelStart(src: string, end: number): number {
  let i = end;
  while (i > 0 && /\s/.test(src[i - 1])) i--;
  if (src[i - 1] === ">") {
    let depth = 0;
    for (i = i - 1; i >= 0; i--) {
      if (src[i] === ">") depth++;
      else if (src[i] === "<" && --depth === 0) break;
    }
  }
  while (i > 0 && /[\w:]/.test(src[i - 1])) i--;
  return i;
}

/** Rewrites every `<<<...>>>` launch. */
export function rewriteLaunches(src: string, file: string): string {
  let out = src;
  for (;;) {
    const open = out.indexOf("<<<");
    if (open < 0) return out;
    const close = out.indexOf(">>>", open);
    const paren = out.indexOf("(", close);
    const parenEnd = paren < 0 ? -1 : matching(out, paren, "(", ")");
    if (close < 0 || parenEnd < 0 || out.slice(close + 3, paren).trim() !== "") {
      throw new Error(`${file}: cannot parse the kernel launch at offset ${open}`);
    }
    const start = kernelStart(out, open);
    const kernel = out.slice(start, open).trim();
    const cfg = out.slice(open + 3, close);
    const args = out.slice(paren, parenEnd + 1);
    const name = JSON.stringify(kernel.replace(/\s+/g, " "));
    out = `${out.slice(0, start)}::vsim::launch(${kernel}, ${name}, ${cfg})${args}${out.slice(parenEnd + 1)}`;
  }
}

/** Splits a declarator list at top-level commas. */
function splitDeclarators(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "[" || ch === "(" || ch === "<") depth++;
    if (ch === "]" || ch === ")" || ch === ">") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) parts.push(cur.trim());
  return parts;
}

/**
 * `__shared__ T a[N], b[M];` becomes one reference per declarator into the block's static shared memory
 * (a tag per declaration keeps one variable per block); `extern __shared__ T x[];` becomes a pointer to
 * the dynamic window. Tags are named by file and position in it, so that a file rewrites to the same text
 * in every build (the object cache is keyed by that text).
 */
export function rewriteShared(src: string, file: string): string {
  const prefix = `vsim_shared_${file.slice(file.lastIndexOf("/") + 1).replace(/\W/g, "_")}_`;
  let tags = 0;
  return src.replace(
    /(extern\s+)?__shared__\s+(?:__align__\(\d+\)\s+)?([^;]*?);/g,
    (_all, ext: string | undefined, decl: string) => {
      const m = /^((?:const\s+|unsigned\s+|signed\s+)*[\w:]+(?:<[^;]*>)?)\s+(.*)$/s.exec(decl.trim());
      if (!m) throw new Error(`${file}: cannot parse the __shared__ declaration "${decl}"`);
      const [, type, rest] = m;
      return splitDeclarators(rest).map((d) => {
        const dm = /^(\w+)\s*((?:\[[^\]]*\])*)$/.exec(d);
        if (!dm) throw new Error(`${file}: cannot parse the __shared__ declarator "${d}"`);
        const [, name, dims] = dm;
        if (ext) {
          return `${type}* const ${name} = static_cast<${type}*>(::vsim::dynamic_smem());`;
        }
        const tag = `${prefix}${tags++}`;
        return `static const char ${tag} = 0; ${type} (&${name})${dims} = ::vsim::shared_var<${type}${dims}>(&${tag});`;
      }).join(" ");
    },
  );
}

/**
 * A kernel defined with `__launch_bounds__(N[, M])` starts with `::vsim::launch_bounds(N);`, so that a
 * launch of more than N threads per block fails as the driver's does (the macro itself expands to nothing).
 */
export function rewriteLaunchBounds(src: string, file: string): string {
  let out = src;
  let from = 0;
  for (;;) {
    const at = out.indexOf("__launch_bounds__(", from);
    if (at < 0) return out;
    const open = at + "__launch_bounds__".length;
    const close = matching(out, open, "(", ")");
    const params = close < 0 ? -1 : out.indexOf("(", close + 1);
    const paramsEnd = params < 0 ? -1 : matching(out, params, "(", ")");
    if (paramsEnd < 0) throw new Error(`${file}: cannot parse the __launch_bounds__ at offset ${at}`);
    from = paramsEnd;
    const body = /^\s*\{/.exec(out.slice(paramsEnd + 1));
    if (!body) continue; // a declaration: the definition carries the check
    const [max] = splitDeclarators(out.slice(open + 1, close));
    const insert = paramsEnd + 1 + body[0].length;
    out = `${out.slice(0, insert)} ::vsim::launch_bounds(static_cast<long long>(${max}));${
      out.slice(insert)
    }`;
  }
}

/** The whole rewrite of one source file. */
export function rewriteForSim(src: string, file: string): string {
  return rewriteShared(rewriteLaunchBounds(rewriteLaunches(src, file), file), file);
}
