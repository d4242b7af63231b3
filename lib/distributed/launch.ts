/**
 * `--gpus N`: starts N copies of this command on this machine, one per GPU (or per process of the
 * host group), with the torchrun-style environment set. When one exits with an error the others are
 * stopped, and the message names the rank. Unless VSWIFT_DIST_SECRET is set, the ranks share a fresh
 * rendezvous secret made here (passed in their environment only, never printed).
 */
import { newSecret, SECRET_VAR } from "./secret.ts";

/** A TCP port that was free a moment ago, for MASTER_PORT. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Runs `args` (a deno script and its arguments) as ranks 0..n-1 and waits for all of them. Returns
 * the exit code for this process: 0 when every rank succeeded.
 */
export async function launchLocal(
  n: number,
  args: string[],
  env: Record<string, string> = {},
): Promise<number> {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--gpus must be a positive integer, got ${n}`);
  const port = freePort();
  const secret = Deno.env.get(SECRET_VAR) || newSecret();
  const children = Array.from({ length: n }, (_, rank) =>
    new Deno.Command(Deno.execPath(), {
      args,
      env: {
        ...env,
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: String(n),
        LOCAL_WORLD_SIZE: String(n),
        NNODES: "1",
        NODE_RANK: "0",
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        [SECRET_VAR]: secret,
      },
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn());
  const signal = (c: Deno.ChildProcess, sig: Deno.Signal) => {
    try {
      c.kill(sig);
    } catch {
      // already gone
    }
  };
  const forward = (sig: Deno.Signal) => () => children.forEach((c) => signal(c, sig));
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  let failed: { rank: number; code: number } | undefined;
  try {
    await Promise.all(children.map(async (c, rank) => {
      const status = await c.status;
      if (status.code !== 0 && !failed) {
        failed = { rank, code: status.code };
        console.error(
          `rank ${rank} exited with code ${status.code}${
            status.signal ? ` (${status.signal})` : ""
          }; stopping the other ranks`,
        );
        // SIGTERM lets a rank save; one stuck waiting for the dead peer gets SIGKILL after a grace period.
        children.forEach((o, r) => r !== rank && signal(o, "SIGTERM"));
        const grace = setTimeout(() => children.forEach((o) => signal(o, "SIGKILL")), 10_000);
        Promise.all(children.map((o) => o.status)).then(() => clearTimeout(grace));
      }
    }));
  } finally {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
  }
  return failed ? (failed.code || 1) : 0;
}
