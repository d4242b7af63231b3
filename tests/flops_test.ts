/** The FLOP report reproduces V-SWIFT's README table at decoder depth 8 and gives honest MFU figures. */
import assert from "node:assert/strict";
import { countFlops, flopsTable, fvcoreFormat } from "../lib/model/flops.ts";
import { modelConfig } from "../lib/model/config.ts";

Deno.test("decoder depth 8 reproduces V-SWIFT's README parameters and FLOPs", () => {
  const readme: Record<string, [string, string]> = {
    small: ["25.808M", "17.929G"],
    base: ["0.101G", "53.433G"],
    large: ["0.33G", "0.11T"],
    huge: ["0.658G", "0.162T"],
    giant: ["1.04G", "0.3T"],
  };
  for (const r of flopsTable([8])) {
    assert.deepEqual([fvcoreFormat(r.params), fvcoreFormat(r.macs)], readme[r.size], r.size);
  }
});

Deno.test("decoder depth 4 (as trained): ViT-B is 34.758 GMAC, 208.5 GFLOP per training video", () => {
  const b = countFlops(modelConfig("base", { decoderDepth: 4 }));
  assert.deepEqual([b.visible, b.masked], [152, 1416]);
  assert.equal((b.macs / 1e9).toFixed(3), "34.758");
  assert.equal((b.trainFlops / 1e9).toFixed(1), "208.5");
  assert.equal((b.params / 1e6).toFixed(3), "94.211");
  const g = countFlops(modelConfig("giant", { decoderDepth: 4 }));
  assert.deepEqual([g.visible, g.masked], [200, 1848]);
  assert.equal((g.macs / 1e9).toFixed(3), "255.675");
});

Deno.test("fvcore's number format", () => {
  assert.equal(fvcoreFormat(101_307_000), "0.101G");
  assert.equal(fvcoreFormat(110_404_644_864), "0.11T");
  assert.equal(fvcoreFormat(300_227_030_016), "0.3T");
  assert.equal(fvcoreFormat(42), "42");
});
