/** The CUDA simulator's own PTX check (cuda/sim/ptx_selfcheck.cpp), called on its library file. */

/** Runs vsim_ptx_selfcheck in the simulator library at `path`: an empty list when every case holds. */
export function simPtxSelfcheck(path: string): string[] {
  const lib = Deno.dlopen(path, { vsim_ptx_selfcheck: { parameters: ["buffer", "i32"], result: "i32" } });
  try {
    const buf = new Uint8Array(4096);
    const failures = lib.symbols.vsim_ptx_selfcheck(buf, buf.length);
    const end = buf.indexOf(0);
    const msg = new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
    return failures === 0 ? [] : [`${failures} wrong: ${msg}`];
  } finally {
    lib.close();
  }
}
