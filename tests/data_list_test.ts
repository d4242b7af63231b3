/** List files: the four formats, the data root, and errors that name the file and line. */
import assert from "node:assert/strict";
import { formatListLine, ListFileError, parseList, readList } from "../lib/data/list_file.ts";

Deno.test("list files: V-SWIFT's csv, VideoMAE's 'path label', and the 4- and 6-field formats", () => {
  const text = [
    "# a comment",
    "a/x.mp4,3",
    "",
    "b/y.mp4 7",
    "c/z.webm 2 10 41",
    "src/long.mp4 d/chunk_000.mp4 5 90 179 90",
    "/abs/v.mp4 1",
  ].join("\n");
  const e = parseList(text, { file: "l.txt", dataRoot: "/data" });
  assert.equal(e.length, 5);
  assert.deepEqual([e[0].path, e[0].label, e[0].origin], ["/data/a/x.mp4", 3, "l.txt:2"]);
  assert.deepEqual([e[1].path, e[1].label, e[1].start], ["/data/b/y.mp4", 7, undefined]);
  assert.deepEqual([e[2].path, e[2].label, e[2].start, e[2].end], ["/data/c/z.webm", 2, 10, 41]);
  assert.deepEqual(
    [e[3].source, e[3].path, e[3].label, e[3].sourceStart, e[3].sourceEnd, e[3].frames, e[3].start],
    ["src/long.mp4", "/data/d/chunk_000.mp4", 5, 90, 179, 90, undefined],
  );
  assert.equal(e[4].path, "/abs/v.mp4");
  // Round trip through the writer.
  for (
    const [fmt, line] of [
      ["csv", "a/x.mp4,3"],
      ["path-label", "b/y.mp4 7"],
      ["range", "c/z.webm 2 10 41"],
      ["source-range", "src/long.mp4 d/chunk_000.mp4 5 90 179 90"],
    ] as const
  ) {
    const [p] = parseList(line);
    assert.equal(formatListLine(fmt, { ...p, path: line.includes(",") ? p.source : p.path }), line);
  }
});

Deno.test("list files: bad lines are errors naming the file and the line", () => {
  const bad: [string, RegExp][] = [
    ["a.mp4,1,2", /l\.txt:2: 3 comma-separated fields/],
    ["a.mp4 1 2", /l\.txt:2: 3 space-separated fields/],
    ["a.mp4 cat", /l\.txt:2: label "cat" is not a non-negative integer/],
    ["a.mp4,-1", /l\.txt:2: label "-1"/],
    ["a.mp4 1 20 10", /l\.txt:2: end frame 10 is before start frame 20/],
    ["s a.mp4 1 0 x 3", /l\.txt:2: end frame "x"/],
  ];
  for (const [line, re] of bad) {
    assert.throws(() => parseList(`ok.mp4 0\n${line}\n`, { file: "l.txt" }), (e: Error) => {
      assert.ok(e instanceof ListFileError && re.test(e.message), `${line}: ${e.message}`);
      return true;
    });
  }
});

Deno.test("list files: a missing or empty file is an error", async () => {
  await assert.rejects(
    readList("/nonexistent/list.txt"),
    /Cannot read the list file \/nonexistent\/list\.txt/,
  );
  const tmp = await Deno.makeTempFile();
  await Deno.writeTextFile(tmp, "# nothing\n\n");
  await assert.rejects(readList(tmp), /has no entries/);
  await Deno.remove(tmp);
});
