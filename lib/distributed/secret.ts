/**
 * The job's rendezvous secret: VSWIFT_DIST_SECRET, the same on every rank (`--gpus N` makes a fresh one
 * per run). It is read once and then removed from this process's environment, so that the decoders and
 * other children never inherit it; nothing prints it.
 */
import { randomBytes } from "node:crypto";

export const SECRET_VAR = "VSWIFT_DIST_SECRET";
const MIN_LENGTH = 16;

/** A fresh secret for a launcher to hand to its ranks: 32 random bytes as hex. */
export function newSecret(): string {
  return randomBytes(32).toString("hex");
}

let cached: string | undefined;

/** The job's secret; throws, saying how to set it, when it is missing or too short. */
export function jobSecret(): string {
  if (cached !== undefined) return cached;
  const v = Deno.env.get(SECRET_VAR);
  if (v === undefined || v === "") {
    throw new Error(
      `${SECRET_VAR} is not set: ranks authenticate each other with a per-job secret. Set it to the same ` +
        `random value for every rank, e.g. export ${SECRET_VAR}=$(openssl rand -hex 32) before torchrun ` +
        `or srun (deno task ... --gpus N sets one itself)`,
    );
  }
  if (v.length < MIN_LENGTH) {
    throw new Error(
      `${SECRET_VAR} has ${v.length} characters; use at least ${MIN_LENGTH} (openssl rand -hex 32)`,
    );
  }
  cached = v;
  Deno.env.delete(SECRET_VAR);
  return v;
}
