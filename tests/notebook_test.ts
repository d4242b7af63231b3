/**
 * The notebook pieces of mod.ts: SVG line plots and confusion matrices, the test results read back,
 * clips as PNG strips, the executed-notebook check, device memory given back by a training run that is
 * broken off, and a training run stopped by SIGINT after its step (what a Jupyter interrupt sends).
 */
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { decodeFrames, probeVideo } from "../lib/data/ffmpeg.ts";
import { ensureSyntheticDataset } from "../lib/data/synthetic.ts";
import { checkExecutedNotebook } from "../lib/notebook/check.ts";
import { escapeXml, niceTicks } from "../lib/notebook/line_plot.ts";
import { parseTestResults, splitCsvLine } from "../lib/notebook/test_results.ts";
import { writeTestResults } from "../lib/train/finetune/tta.ts";
import { applyOverrides, defaultConfig } from "../lib/train/pretrain/config.ts";
import {
  Arena,
  confusionMatrix,
  confusionMatrixSvg,
  linePlotSvg,
  memoryInUse,
  pretrain,
  readTestResults,
  videoStripPng,
} from "../mod.ts";
import { scratchDir, TINY_PRETRAIN_MODEL_FLAGS } from "./helpers.ts";

const scratch = await scratchDir("vswift-notebook-");

/** A fresh folder of this file's scratch folder. */
async function folder(name: string): Promise<string> {
  const dir = `${scratch}/${name}`;
  await Deno.mkdir(dir);
  return dir;
}

/** The (x, y) points of every path of an SVG, one array per path segment started by M. */
function pathRuns(svg: string): [number, number][][] {
  const runs: [number, number][][] = [];
  for (const [, d] of svg.matchAll(/<path d="([^"]+)"/g)) {
    for (const [, cmd, x, y] of d.matchAll(/([ML])([-\d.]+),([-\d.]+)/g)) {
      if (cmd === "M") runs.push([]);
      runs[runs.length - 1].push([Number(x), Number(y)]);
    }
  }
  return runs;
}

Deno.test("line plot: points in order, larger values higher, a NaN breaks the line, bad input refused", () => {
  const svg = linePlotSvg([{ name: "loss", y: [3, 2, NaN, 1, 0.5] }], { title: "a <b>", xLabel: "step" });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svg.includes("a &#60;b&#62;"), "the title is escaped");
  const runs = pathRuns(svg);
  assert.deepEqual(runs.map((r) => r.length), [2, 2]);
  const pts = runs.flat();
  for (let i = 1; i < pts.length; i++) {
    assert.ok(pts[i][0] > pts[i - 1][0], "x increases with the step");
    assert.ok(pts[i][1] > pts[i - 1][1], "a smaller loss is drawn lower (larger SVG y)");
  }
  // Log scale: equal ratios are equal distances.
  const log = pathRuns(linePlotSvg([{ name: "", y: [100, 10, 1] }], { logY: true })).flat();
  assert.ok(Math.abs((log[1][1] - log[0][1]) - (log[2][1] - log[1][1])) < 0.2);
  // Two series share the axes: the same value at the same x is the same point.
  const two = pathRuns(linePlotSvg([{ name: "a", y: [1, 2] }, { name: "b", x: [2, 1], y: [2, 1] }]));
  assert.deepEqual(two[0][0], two[1][1]);
  assert.throws(() => linePlotSvg([{ name: "empty", y: [NaN] }]), /needs a finite point.*empty/);
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0.13, 0.61, 4), [0.2, 0.4, 0.6]);
  assert.equal(escapeXml(`"&'`), "&#34;&#38;&#39;");
});

Deno.test("confusion matrix: counts by (true, predicted), accuracy in the picture, bad classes refused", () => {
  const m = confusionMatrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3);
  assert.deepEqual(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]]);
  const svg = confusionMatrixSvg(m, ["left", "right", "up"]);
  assert.ok(svg.includes("accuracy 66.7% (4 / 6)"));
  assert.equal([...svg.matchAll(/<rect x=/g)].length, 9);
  assert.throws(() => confusionMatrix([0, 3], [0, 1], 3), /label of item 1 is 3/);
  assert.throws(() => confusionMatrix([0], [0, 1], 3), /1 labels but 2 predictions/);
  assert.throws(() => confusionMatrixSvg(m, ["a", "b"]), /k x k with k names/);
});

Deno.test("test results: what the multi-view test writes reads back, quotes and all", async () => {
  const dir = await folder("results");
  const result = (
    video: number,
    label: number,
    views: number,
    probs: number[],
    top5: number[],
    c1: boolean,
  ) => ({
    video,
    label,
    views,
    probs: Float64Array.from(probs),
    top5,
    correct1: c1,
    correct5: true,
  });
  await writeTestResults(dir, {
    results: [
      result(0, 1, 6, [0.1, 0.7, 0.2], [1, 2, 0], true),
      result(1, 0, 5, [0.3, 0.2, 0.5], [2, 0, 1], false),
    ],
    summary: {
      videos: 2,
      views: 11,
      viewsPerVideo: 6,
      top1: 50,
      top5: 100,
      missingVideos: [],
      incompleteVideos: [1],
      padViews: 0,
      repeatedViews: 0,
    },
  }, { paths: ["a/x.mp4", 'b/"odd", name.mp4'], labelNames: ["left", "right, fast", "up"] });
  const rows = await readTestResults(`${dir}/test_per_video.csv`);
  assert.equal(rows.length, 2);
  assert.deepEqual(rows[0], {
    video: 0,
    path: "a/x.mp4",
    label: "right, fast",
    prediction: "right, fast",
    correct1: true,
    correct5: true,
    views: 6,
    top5: ["right, fast", "up", "left"],
    top5Probs: [0.7, 0.2, 0.1],
  });
  assert.equal(rows[1].path, 'b/"odd", name.mp4');
  assert.equal(rows[1].prediction, "up");
  assert.equal(rows[1].correct1, false);
  assert.deepEqual(splitCsvLine('1,"a ""b""",c'), ["1", 'a "b"', "c"]);
  assert.throws(() => parseTestResults("video,path\n"), /does not start with the header/);
  await assert.rejects(readTestResults(`${dir}/missing.csv`), /Cannot read the test results .*missing.csv/);
});

Deno.test("a video as a PNG strip: evenly spaced frames, the pixels ffmpeg decodes", async () => {
  const dir = await folder("strip");
  const ds = await ensureSyntheticDataset({ dir, videos: 1, classes: 1, size: 32, frames: 16 });
  const path = `${ds.dataRoot}/videos/00000.mp4`;
  const png = decode(await videoStripPng(path, { frames: 4, shortSide: 32 }));
  assert.equal(png.width, 4 * (32 + 2) + 2);
  assert.equal(png.height, 32 + 4);
  // Frame 10 of 16 (the third of 4 spaced frames) sits in the third cell.
  const info = await probeVideo(path);
  const f = await decodeFrames({ path, info, indices: [10], shortSide: 32 });
  const px = png.data as Uint8Array;
  let diff = 0;
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      for (let c = 0; c < 3; c++) {
        diff += Math.abs(
          px[((2 + y) * png.width + 2 + 2 * 34 + x) * png.channels + c] - f.data[(y * 32 + x) * 3 + c],
        );
      }
    }
  }
  assert.equal(diff, 0);
});

Deno.test("executed-notebook check: errors, cells that did not run, missing images, memory not given back", () => {
  const png = { "image/png": "iVBORw0KGgo=" };
  const good = {
    cells: [
      { cell_type: "markdown" },
      {
        id: "train",
        cell_type: "code",
        execution_count: 1,
        outputs: [
          { output_type: "stream", name: "stdout", text: ["before: 0.0 MiB\n", "after: 0.0 MiB\n"] },
          { output_type: "display_data", data: png },
        ],
      },
    ],
  };
  assert.deepEqual(checkExecutedNotebook(good, { train: { "image/png": 1 } }), []);
  const bad = {
    cells: [
      {
        id: "train",
        cell_type: "code",
        execution_count: 1,
        outputs: [
          { output_type: "stream", name: "stdout", text: "before: 0.0 MiB\nafter: 12.0 MiB\n" },
          { output_type: "error", ename: "TypeError", evalue: "x is undefined" },
        ],
      },
      { id: "later", cell_type: "code", execution_count: null, outputs: [] },
    ],
  };
  assert.deepEqual(checkExecutedNotebook(bad, { train: { "image/png": 1 }, gone: { "image/svg+xml": 1 } }), [
    "train failed: TypeError: x is undefined",
    `train did not give its memory back: before "0.0 MiB", after "12.0 MiB"`,
    "later did not run (no execution count)",
    "train has 0 image/png outputs, expected at least 1",
    'no code cell with id "gone"',
  ]);
});

function tinyRun(output: string, steps: number) {
  const cfg = defaultConfig();
  applyOverrides(cfg, [
    ...TINY_PRETRAIN_MODEL_FLAGS,
    ...["--data.source", "memory", "--train.batch_size", "2", "--train.steps", String(steps)],
    ...["--train.output", output, "--train.log_every", "1", "--train.vis_every", "0"],
    ...["--train.device", "host", "--model.dtype", "f32", "--train.tensorboard", "false"],
  ]);
  return cfg;
}

Deno.test("a training run broken off after two steps gives back every byte and arena it took", async () => {
  const arena = new Arena(1 << 16);
  const held = memoryInUse();
  arena.alloc([1 << 15], "f32");
  arena.alloc([1 << 15], "f32"); // a second chunk
  assert.equal(memoryInUse().arenas, held.arenas + 1);
  assert.ok(memoryInUse().arenaBytes >= held.arenaBytes + 2 * (1 << 17));
  arena.reset(); // merged into one block
  assert.equal(memoryInUse().arenas, held.arenas + 1);
  arena.dispose();
  assert.deepEqual(memoryInUse(), held);

  const out = await folder("broken-off");
  const before = memoryInUse();
  let steps = 0;
  let peak = 0;
  for await (const _ of pretrain(tinyRun(out, 20))) {
    peak = Math.max(peak, memoryInUse().total);
    if (++steps === 2) break;
  }
  assert.ok(peak > before.total, "the run held memory while it ran");
  assert.deepEqual(memoryInUse(), before);
});

Deno.test("SIGINT (a Jupyter interrupt) stops a stopOnInterrupt run after its step, with a checkpoint", async () => {
  const out = await folder("sigint");
  const script = `${out}/run.ts`;
  const mod = new URL("../mod.ts", import.meta.url).href;
  const cfg = JSON.stringify(tinyRun(`${out}/run`, 200));
  await Deno.writeTextFile(
    script,
    `import { memoryInUse, pretrain, stopOnInterrupt } from "${mod}";
const run = stopOnInterrupt((signal) => pretrain(${cfg}, { signal }), (m) => console.log(m));
let r;
while (!(r = await run.next()).done) console.log("step", r.value.step);
console.log("end", JSON.stringify({ ...r.value, memory: memoryInUse().total }));
console.log("listeners gone");
`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--config", new URL("../deno.json", import.meta.url).pathname, script],
    stdout: "piped",
    stderr: "piped",
    env: { VSWIFT_QUIET: "1" },
  }).spawn();
  const lines: string[] = [];
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let sent = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    const parts = buf.split("\n");
    buf = parts.pop()!;
    lines.push(...parts);
    if (!sent && lines.includes("step 2")) {
      child.kill("SIGINT");
      sent = true;
    }
  }
  const status = await child.status;
  const stderr = await new Response(child.stderr).text();
  assert.equal(status.code, 0, `the run exited with ${status.code}: ${stderr}`);
  assert.ok(lines.some((l) => l.startsWith("interrupt: stopping after this step")), lines.join("\n"));
  const end = JSON.parse(lines.find((l) => l.startsWith("end "))!.slice(4));
  const last = Number(lines.filter((l) => l.startsWith("step ")).pop()!.slice(5));
  assert.equal(end.interrupted, true);
  assert.ok(last >= 2 && last < 200, `stopped after step ${last}`);
  assert.match(end.lastCheckpoint, new RegExp(`step-0*${last}$`));
  assert.equal(end.memory, 0);
  assert.ok(lines.includes("listeners gone"));
});
