/** The generated clips: the labelled (plain) clips stay as they were; the varied pool differs from them. */
import assert from "node:assert/strict";
import { ensureSyntheticDataset, renderSyntheticVideo } from "../lib/data/synthetic.ts";
import { ffmpegPath, probeVideo, runTool } from "../lib/data/ffmpeg.ts";

async function digest(a: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(a)));
  return Array.from(h.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("plain clips are unchanged by the varied style (checkpoints and figures were made on them)", async () => {
  // Digests of clips rendered before the varied style existed.
  const pinned: [number, number, number, string][] = [
    [0, 1, 0, "a440652064947143"],
    [4, 7, 3, "82dcd2df572095a1"],
    [6, 2, 5, "2399d8e7b6c7f14e"],
  ];
  for (const [label, seed, index, want] of pinned) {
    assert.equal(await digest(renderSyntheticVideo(label, seed, index, { size: 32, frames: 8 })), want);
    assert.equal(
      await digest(renderSyntheticVideo(label, seed, index, { size: 32, frames: 8, style: "plain" })),
      want,
    );
  }
});

Deno.test("varied clips: deterministic and different from the plain clip of the same seed and index", () => {
  const opts = { size: 32, frames: 8 } as const;
  for (let i = 0; i < 24; i++) {
    const varied = renderSyntheticVideo(i % 8, 5, i, { ...opts, style: "varied" });
    assert.deepEqual(varied, renderSyntheticVideo(i % 8, 5, i, { ...opts, style: "varied" }));
    assert.notDeepEqual(varied, renderSyntheticVideo(i % 8, 5, i, opts));
  }
});

Deno.test("batch encoding: one ffmpeg process cuts clips that each decode on their own to the rendered frames", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vswift_synth_batch_" });
  try {
    const opts = { videos: 5, classes: 4, size: 32, frames: 8, fps: 16, seed: 3, style: "varied" } as const;
    const ds = await ensureSyntheticDataset({ ...opts, dir, encoding: "batch" });
    const lines = (await Deno.readTextFile(ds.list)).trim().split("\n");
    assert.equal(lines.length, 5);
    for (const [i, line] of lines.entries()) {
      const [path, label] = line.split(" ");
      assert.equal(Number(label), i % 4);
      const info = await probeVideo(`${dir}/${path}`);
      assert.deepEqual([info.width, info.height, info.frames, info.fps], [32, 32, 8, 16]);
      const rgb = (await runTool(ffmpegPath(), [
        "-v",
        "error",
        "-i",
        `${dir}/${path}`,
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
      ]))
        .stdout;
      const want = renderSyntheticVideo(i % 4, 3, i, { size: 32, frames: 8, style: "varied" });
      assert.equal(rgb.length, want.length);
      // H.264 at crf 20 with 4:2:0 chroma: close to the rendered clip, not equal.
      let err = 0;
      for (let k = 0; k < want.length; k++) err += Math.abs(rgb[k] - want[k]);
      assert.ok(err / want.length < 12, `clip ${i}: mean absolute error ${err / want.length}`);
    }
    // Made again with the same options: reused as it is.
    const stamp = Deno.statSync(`${dir}/videos/00002.mp4`).mtime;
    await ensureSyntheticDataset({ ...opts, dir, encoding: "batch" });
    assert.deepEqual(Deno.statSync(`${dir}/videos/00002.mp4`).mtime, stamp);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
