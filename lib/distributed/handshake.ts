/**
 * The rendezvous handshake: a versioned challenge-response in which both ends prove that they know the
 * job's secret (HMAC-SHA256 over fresh nonces and the joining rank's hello), so that a stray or hostile
 * peer never receives the rank table and a rank never talks to a process that is not of its job. The
 * secret itself never crosses the wire. Every handshake message is a small frame (HANDSHAKE_FRAME).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { Channel, closeQuietly, PeerError } from "./channel.ts";

/** Bumped whenever the messages between ranks change; ranks of different versions refuse each other. */
export const RENDEZVOUS_VERSION = 1;
const MAGIC = "vswift-rendezvous";
/** The largest handshake message: the hellos are a few hundred bytes. */
export const HANDSHAKE_FRAME = 4096;

/** What a connecting rank says about itself. */
export interface Hello {
  /** "join": to rank 0's rendezvous; "ring": to the previous rank's ring listener. */
  purpose: "join" | "ring";
  rank: number;
  worldSize: number;
  /** Its ring listener's port (join only; 0 otherwise). */
  port: number;
}

/** A peer that failed the handshake: drop it, the job goes on. */
export class HandshakeError extends PeerError {
  constructor(message: string) {
    super(message);
    this.name = "HandshakeError";
  }
}

function mac(secret: string, ...parts: string[]): Buffer {
  return createHmac("sha256", secret).update(parts.join("|")).digest();
}

function sameMac(hex: unknown, expected: Buffer): boolean {
  if (typeof hex !== "string" || !/^[0-9a-f]{64}$/.test(hex)) return false;
  return timingSafeEqual(Buffer.from(hex, "hex"), expected);
}

function isHello(h: unknown): h is Hello {
  const o = h as Hello;
  return typeof o === "object" && o !== null && (o.purpose === "join" || o.purpose === "ring") &&
    [o.rank, o.worldSize, o.port].every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff);
}

/** Races `work` against `ms`; on timeout closes `conn` and throws `message`. */
export async function withDeadline<T>(
  work: Promise<T>,
  ms: number,
  conn: Deno.Conn,
  message: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      closeQuietly(conn);
      reject(new HandshakeError(message));
    }, ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The listening side: challenges the peer and returns its authenticated hello. Throws HandshakeError
 * (the connection is closed) for anything else, within `timeoutMs` in all.
 */
export function greetPeer(conn: Deno.Conn, secret: string, timeoutMs: number): Promise<Hello> {
  const remote = conn.remoteAddr as Deno.NetAddr;
  const who = `a peer at ${remote.hostname}:${remote.port}`;
  const ch = new Channel(conn, who, timeoutMs, HANDSHAKE_FRAME);
  const work = async () => {
    const nonce = randomBytes(32).toString("hex");
    await ch.sendJson({ magic: MAGIC, version: RENDEZVOUS_VERSION, nonce });
    const reply = await ch.recvJson<Record<string, unknown>>();
    if (reply?.magic !== MAGIC) throw new HandshakeError(`${who} does not speak the vswift rendezvous`);
    if (reply.version !== RENDEZVOUS_VERSION) {
      throw new HandshakeError(
        `${who} speaks rendezvous version ${reply.version}, this rank ${RENDEZVOUS_VERSION} (mixed installs?)`,
      );
    }
    const hello = reply.hello;
    if (typeof reply.nonce !== "string" || reply.nonce.length !== 64 || !isHello(hello)) {
      throw new HandshakeError(`${who} sent a malformed hello`);
    }
    if (!sameMac(reply.mac, mac(secret, "client", nonce, reply.nonce, JSON.stringify(hello)))) {
      throw new HandshakeError(`${who} does not know this job's secret (another job, or not a rank)`);
    }
    await ch.sendJson({
      mac: mac(secret, "server", reply.nonce, nonce, JSON.stringify(hello)).toString("hex"),
    });
    return hello;
  };
  return withDeadline(
    work().catch((e) => {
      ch.close();
      throw e instanceof HandshakeError ? e : new HandshakeError((e as Error).message);
    }),
    timeoutMs,
    conn,
    `${who} did not finish the handshake within ${timeoutMs / 1000} s (idle or too slow)`,
  );
}

/**
 * The connecting side: answers the challenge with `hello` and checks that the listener (named `peer`
 * in messages) knows the secret too.
 */
export function greetListener(
  conn: Deno.Conn,
  secret: string,
  hello: Hello,
  peer: string,
  timeoutMs: number,
): Promise<void> {
  const ch = new Channel(conn, peer, timeoutMs, HANDSHAKE_FRAME);
  const work = async () => {
    const challenge = await ch.recvJson<Record<string, unknown>>();
    if (challenge?.magic !== MAGIC || typeof challenge.nonce !== "string") {
      throw new HandshakeError(`${peer} is not a vswift rendezvous (check MASTER_ADDR and MASTER_PORT)`);
    }
    if (challenge.version !== RENDEZVOUS_VERSION) {
      throw new HandshakeError(
        `${peer} speaks rendezvous version ${challenge.version}, this rank ${RENDEZVOUS_VERSION} (mixed installs?)`,
      );
    }
    const nonce = randomBytes(32).toString("hex");
    const text = JSON.stringify(hello);
    await ch.sendJson({
      magic: MAGIC,
      version: RENDEZVOUS_VERSION,
      nonce,
      hello,
      mac: mac(secret, "client", challenge.nonce, nonce, text).toString("hex"),
    });
    let proof: Record<string, unknown>;
    try {
      proof = await ch.recvJson();
    } catch (e) {
      throw new HandshakeError(
        `${peer} refused this rank (${(e as Error).message}); is VSWIFT_DIST_SECRET the same for every rank?`,
      );
    }
    if (!sameMac(proof?.mac, mac(secret, "server", nonce, challenge.nonce, text))) {
      throw new HandshakeError(
        `${peer} does not know this job's secret (another job or an impostor); not joining`,
      );
    }
  };
  return work().catch((e) => {
    ch.close();
    throw e instanceof HandshakeError ? e : new HandshakeError((e as Error).message);
  });
}
