/** Timing on the device with the ABI's events (wall clock on the host build), and result records. */
import { native } from "../lib/ffi/native.ts";

/** Milliseconds per call of `fn`, after `warmup` calls, over `iters` calls between two events. */
export function timeMs(fn: () => void, opts: { warmup?: number; iters?: number } = {}): number {
  const n = native();
  for (let i = 0; i < (opts.warmup ?? 3); i++) fn();
  const [a, b] = [n.createEvent(), n.createEvent()];
  const iters = opts.iters ?? 10;
  n.call("vs_device_sync");
  n.call("vs_event_record", a, n.stream);
  for (let i = 0; i < iters; i++) fn();
  n.call("vs_event_record", b, n.stream);
  const ms = n.elapsedMs(a, b);
  n.call("vs_event_destroy", a);
  n.call("vs_event_destroy", b);
  return ms / iters;
}

/** The commit the working tree is at (with "+dirty" when it has changes). */
export async function commitId(): Promise<string> {
  const run = async (...args: string[]) =>
    new TextDecoder().decode(
      (await new Deno.Command("git", { args, stdout: "piped", stderr: "null" }).output()).stdout,
    ).trim();
  try {
    const id = await run("rev-parse", "--short", "HEAD");
    const dirty = (await run("status", "--porcelain", "--untracked-files=no")) !== "";
    return id + (dirty ? "+dirty" : "");
  } catch {
    return "unknown";
  }
}

/** Writes a Markdown record into bench/results/ named by date, device and benchmark. */
export async function recordResult(bench: string, device: string, body: string): Promise<string> {
  const date = new Date().toISOString().slice(0, 10);
  const slug = device.split(",")[0].replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").toLowerCase();
  const dir = decodeURIComponent(new URL("./results/", import.meta.url).pathname);
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}${date}-${slug}-${bench}.md`;
  const text = `# ${bench} on ${device}\n\ndate: ${date}\ncommit: ${await commitId()}\n\n${body}\n`;
  await Deno.writeTextFile(path, text);
  return path;
}
