/**
 * The NCCL part of the GPU self-test: ranks (child processes of `deno task doctor`) join an NCCL group
 * through the same rendezvous as training, all-reduce and broadcast known values, and report what
 * they got. World size 1 on one GPU always; two ranks on one GPU where NCCL allows it.
 */
import { distEnv } from "../distributed/env.ts";
import { freePort } from "../distributed/launch.ts";
import { NcclGroup } from "../distributed/nccl_group.ts";
import { newSecret, SECRET_VAR } from "../distributed/secret.ts";
import { openNative } from "../ffi/native.ts";
import { allocPersistent } from "../memory.ts";
import { readFloats, writeTensor } from "../tensor.ts";

/** Runs in a child: one rank's part. Prints a JSON line. */
export async function ncclRank(device: "cuda" | "cuda-sim"): Promise<void> {
  const env = distEnv();
  await openNative({ device, deviceIndex: env.localRank, quiet: true });
  const group = await NcclGroup.create(env);
  const n = 1 << 20;
  const t = allocPersistent([n], "f32");
  writeTensor(t, Float32Array.from({ length: n }, (_, i) => (i % 17) + env.rank));
  await group.allReduce(t, "sum");
  const sum = readFloats(t);
  writeTensor(t, Float32Array.from({ length: n }, () => env.rank + 1));
  await group.broadcast(t, 0);
  const bcast = readFloats(t);
  const w = env.worldSize;
  let bad = 0;
  for (let i = 0; i < n; i++) {
    if (sum[i] !== w * (i % 17) + (w * (w - 1)) / 2) bad++;
    if (bcast[i] !== 1) bad++;
  }
  await group.close();
  console.log(JSON.stringify({ rank: env.rank, bad }));
}

/** Result lines ("ok ...", "FAIL ...", "skipped ...") for world sizes 1 and 2 on GPU 0. */
export async function checkNccl(script: string, device: "cuda" | "cuda-sim"): Promise<string[]> {
  const lines: string[] = [];
  for (const world of [1, 2]) {
    const port = String(freePort());
    const secret = newSecret();
    const runs = await Promise.all(
      Array.from({ length: world }, (_, rank) =>
        new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", script, "--nccl-child", "--device", device],
          env: {
            RANK: String(rank),
            WORLD_SIZE: String(world),
            LOCAL_RANK: "0",
            MASTER_ADDR: "127.0.0.1",
            MASTER_PORT: port,
            VSWIFT_DIST_TIMEOUT: "120",
            [SECRET_VAR]: secret,
          },
          stdout: "piped",
          stderr: "piped",
        }).output()),
    );
    const errs = runs.map((r) => new TextDecoder().decode(r.stderr).trim()).filter(Boolean);
    if (runs.every((r) => r.success)) {
      const bad = runs.reduce(
        (s, r) => s + JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").pop()!).bad,
        0,
      );
      lines.push(
        `${bad === 0 ? "ok  " : "FAIL"} NCCL all-reduce and broadcast, ${world} rank(s) on GPU 0${
          bad ? `: ${bad} wrong values` : ""
        }`,
      );
    } else if (world === 2 && errs.some((e) => /duplicate GPU|invalid usage/i.test(e))) {
      lines.push("skipped: NCCL does not allow two ranks on one GPU here (it needs a second GPU)");
    } else {
      lines.push(`FAIL NCCL with ${world} rank(s): ${errs.join(" | ").slice(0, 2000)}`);
    }
  }
  return lines;
}
