/** The CUDA simulator's own PTX check (cuda/sim/ptx_selfcheck.cpp), called on its library file. */
import { cString } from "./c_string.ts";

/** Runs vsim_ptx_selfcheck in the simulator library at `path`: an empty list when every case holds. */
export function simPtxSelfcheck(path: string): string[] {
  const lib = Deno.dlopen(path, { vsim_ptx_selfcheck: { parameters: ["buffer", "i32"], result: "i32" } });
  try {
    const buf = new Uint8Array(4096);
    const failures = lib.symbols.vsim_ptx_selfcheck(buf, buf.length);
    return failures === 0 ? [] : [`${failures} wrong: ${cString(buf)}`];
  } finally {
    lib.close();
  }
}
