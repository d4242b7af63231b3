/**
 * `deno task convert IN.pth OUT.safetensors [--key model,module] [--strip-prefixes] [--all]`: turns a
 * PyTorch checkpoint (VideoMAE, V-SWIFT; zip or legacy format) into a safetensors file, read without
 * Python. By default the state dict under the first key present of "model", "module" is written with its
 * names and dtypes as they are; --strip-prefixes applies V-SWIFT's fine-tuning renames (`_orig_mod.`,
 * `backbone.`, `encoder.`); --all writes every tensor at the top level of the file instead.
 */
import { saveSafetensors } from "../lib/io/safetensors.ts";
import { openPth, stateDictOf, tensorsOf, toSafeTensors } from "../lib/io/pth.ts";
import { vswiftRename } from "../lib/model/pretrained.ts";
import { parseFlags } from "../lib/task_cli.ts";

const usage =
  "usage: deno task convert IN.pth OUT.safetensors [--key model,module] [--strip-prefixes] [--all]";
const { values, positionals } = parseFlags("deno task convert", usage, {
  allowPositionals: true,
  options: {
    key: { type: "string", default: "model,module" },
    "strip-prefixes": { type: "boolean", default: false },
    all: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help || positionals.length !== 2) {
  console.log(usage);
  Deno.exit(values.help ? 0 : 2);
}
const [input, output] = positionals;

try {
  const ckpt = openPth(input);
  let tensors;
  let key: string | undefined;
  let skipped: string[] = [];
  if (values.all) tensors = toSafeTensors(tensorsOf(ckpt.root));
  else {
    const sd = stateDictOf(ckpt.root, values.key.split(",").map((k) => k.trim()).filter(Boolean), input);
    tensors = toSafeTensors(sd.tensors);
    key = sd.key;
    skipped = sd.skipped;
  }
  ckpt.close();
  if (values["strip-prefixes"]) {
    const r = vswiftRename(tensors);
    tensors = r.tensors;
    for (const d of r.dropped) console.log(`dropped ${d.name}: ${d.why}`);
  }
  if (tensors.size === 0) throw new Error(`${input} has no tensors at its top level; drop --all`);
  await saveSafetensors(output, tensors, { format: "pt", source: input.split("/").pop() ?? input });
  const counts = new Map<string, number>();
  let values_ = 0;
  for (const t of tensors.values()) {
    counts.set(t.dtype, (counts.get(t.dtype) ?? 0) + 1);
    values_ += t.shape.reduce((a, b) => a * b, 1);
  }
  console.log(
    `wrote ${output}: ${tensors.size} tensors, ${(values_ / 1e6).toFixed(3)}M values (${
      [...counts].map(([d, n]) => `${n} ${d}`).join(", ")
    }) from ${ckpt.format}-format ${input}${key ? ` key "${key}"` : ""}`,
  );
  if (skipped.length) console.log(`not tensors, left out: ${skipped.join(", ")}`);
} catch (e) {
  console.error(`convert failed: ${(e as Error).message}`);
  Deno.exit(1);
}
