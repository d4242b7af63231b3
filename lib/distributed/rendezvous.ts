/**
 * Rendezvous over TCP (in the manner of torchrun's store and NCCL's bootstrap): rank 0 listens on
 * MASTER_ADDR:MASTER_PORT (bound to the interface that address resolves to), every other rank joins
 * through the authenticated handshake (handshake.ts) and reports the port of its own ring listener,
 * rank 0 hands out the rank table, and each rank connects to the next one around a ring.
 *
 * A connection that fails the handshake (garbage, wrong version, wrong secret, idle or too slow) is
 * dropped with a warning and the job goes on; an authenticated rank that contradicts the job (world
 * size, a rank twice) ends it. The whole rendezvous has one deadline, and its message names the ranks
 * that never came.
 */
import { Channel, closeQuietly, connectWithRetry, PeerError } from "./channel.ts";
import type { DistEnv } from "./env.ts";
import { greetListener, greetPeer, HandshakeError, type Hello } from "./handshake.ts";
import { jobSecret } from "./secret.ts";

export interface Links {
  rank: number;
  worldSize: number;
  /** Rank 0: one channel per other rank (index = rank); others: [channel to rank 0]. */
  control: (Channel | undefined)[];
  next?: Channel;
  prev?: Channel;
  /** What rank 0 handed out at rendezvous (e.g. NCCL's unique id). */
  shared: Uint8Array;
}

export interface RendezvousOptions {
  /** The whole rendezvous, and afterwards any one message between ranks (VSWIFT_DIST_TIMEOUT). */
  timeoutMs?: number;
  /** One connection's handshake (VSWIFT_DIST_HANDSHAKE_TIMEOUT, default 10 s). */
  handshakeMs?: number;
  /** The job's secret (default: VSWIFT_DIST_SECRET). */
  secret?: string;
  /** Where warnings about dropped connections go (default: stderr). */
  warn?: (message: string) => void;
}

function secondsVar(name: string, fallback: number): number {
  const s = Number(Deno.env.get(name) ?? fallback);
  if (!(s > 0)) throw new RangeError(`${name} must be a positive number of seconds, got ${s}`);
  return s * 1000;
}

/** The timeout for the rendezvous and for any one message between ranks (VSWIFT_DIST_TIMEOUT, 600 s). */
export function distTimeoutMs(): number {
  return secondsVar("VSWIFT_DIST_TIMEOUT", 600);
}

function isLoopback(host: string): boolean {
  return host.startsWith("127.") || host === "::1" || host === "localhost";
}

interface Joined {
  ch: Channel;
  host: string;
  port: number;
}

type TableEntry = { rank: number; host: string; port: number };

/**
 * Accepts connections on `listener` and hands each one's authenticated hello to `take`, which returns
 * true when it has all it waits for. Failed handshakes are dropped (counted, warned); `take` throwing
 * ends the wait with that error. Resolves when `take` is satisfied, rejects at `deadline` with
 * `late()`'s message.
 */
export function acceptPeers(
  listener: Deno.Listener,
  secret: string,
  handshakeMs: number,
  deadlineMs: number,
  take: (hello: Hello, conn: Deno.Conn) => boolean,
  late: () => string,
  warn: (m: string) => void,
): Promise<{ dropped: number }> {
  return new Promise((resolve, reject) => {
    let done = false;
    let dropped = 0;
    const open = new Set<Deno.Conn>();
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const c of open) closeQuietly(c);
      if (err) reject(err);
      else resolve({ dropped });
    };
    const timer = setTimeout(() => finish(new PeerError(late())), deadlineMs);
    const handle = async (conn: Deno.Conn) => {
      open.add(conn);
      try {
        const hello = await greetPeer(conn, secret, handshakeMs);
        open.delete(conn);
        if (done) return closeQuietly(conn);
        if (take(hello, conn)) finish();
      } catch (e) {
        open.delete(conn);
        if (done) return;
        if (!(e instanceof HandshakeError)) return finish(e as Error);
        dropped++;
        warn(`rendezvous: dropped a connection: ${(e as Error).message}`);
      }
    };
    (async () => {
      while (!done) {
        let conn: Deno.Conn;
        try {
          conn = await listener.accept();
        } catch (e) {
          if (!done) finish(new PeerError(`The rendezvous listener failed: ${(e as Error).message}`));
          return;
        }
        handle(conn);
      }
    })();
  });
}

/**
 * Connects the ranks. `shared` is what rank 0 hands to everybody (ignored on other ranks).
 */
export async function rendezvous(
  env: DistEnv,
  shared: Uint8Array = new Uint8Array(),
  opts: RendezvousOptions = {},
): Promise<Links> {
  const { rank, worldSize } = env;
  const timeoutMs = opts.timeoutMs ?? distTimeoutMs();
  const handshakeMs = Math.min(
    timeoutMs,
    opts.handshakeMs ?? secondsVar("VSWIFT_DIST_HANDSHAKE_TIMEOUT", 10),
  );
  const warn = opts.warn ?? ((m: string) => console.error(m));
  if (worldSize === 1) return { rank, worldSize, control: [], shared };
  const secret = opts.secret ?? jobSecret();
  const started = Date.now();
  const left = () => Math.max(1, timeoutMs - (Date.now() - started));
  const where = `MASTER_ADDR:MASTER_PORT ${env.masterAddr}:${env.masterPort}`;
  const control: (Channel | undefined)[] = [];
  let table: TableEntry[];
  let sharedOut = shared;
  let ringListener: Deno.Listener;
  if (rank === 0) {
    let master: Deno.Listener;
    try {
      master = Deno.listen({ hostname: env.masterAddr, port: env.masterPort });
    } catch (e) {
      throw new PeerError(`Rank 0 cannot listen on ${where}: ${(e as Error).message}`);
    }
    const bound = (master.addr as Deno.NetAddr).hostname;
    if (env.nodes > 1 && isLoopback(bound)) {
      master.close();
      throw new PeerError(
        `MASTER_ADDR ${env.masterAddr} resolves to the loopback address ${bound}, which the other ` +
          `${env.nodes - 1} node(s) cannot reach; set MASTER_ADDR to this node's network address`,
      );
    }
    ringListener = Deno.listen({ hostname: bound, port: 0 });
    const joined = new Map<number, Joined>();
    try {
      const missing = () => [...Array(worldSize).keys()].filter((r) => r > 0 && !joined.has(r));
      let lateMessage = "";
      try {
        await acceptPeers(
          master,
          secret,
          handshakeMs,
          timeoutMs,
          (hello, conn) => {
            if (
              hello.purpose !== "join" || hello.worldSize !== worldSize || hello.rank <= 0 ||
              hello.rank >= worldSize
            ) {
              throw new PeerError(
                `Rank ${hello.rank} joined with world size ${hello.worldSize}; expected ranks 1..${
                  worldSize - 1
                } of ${worldSize}`,
              );
            }
            const host = (conn.remoteAddr as Deno.NetAddr).hostname;
            const twice = joined.get(hello.rank);
            if (twice) {
              throw new PeerError(
                `Rank ${hello.rank} joined twice (from ${twice.host} and ${host}); check RANK for each process`,
              );
            }
            joined.set(hello.rank, {
              ch: new Channel(conn, `rank ${hello.rank}`, timeoutMs),
              host,
              port: hello.port,
            });
            return joined.size === worldSize - 1;
          },
          () => (lateMessage = `Rendezvous timed out after ${timeoutMs / 1000} s at ${where}: rank(s) ${
            missing().join(", ")
          } never joined (${joined.size} of ${worldSize - 1} did)`),
          warn,
        );
      } catch (e) {
        // Tell the ranks that did come why the job ends, so that every log names the missing ranks.
        const why = lateMessage || (e as Error).message;
        await Promise.allSettled([...joined.values()].map((j) => j.ch.sendJson({ abort: why })));
        for (const j of joined.values()) j.ch.close();
        throw e;
      }
      table = [{ rank: 0, host: bound, port: (ringListener.addr as Deno.NetAddr).port }];
      for (const [r, j] of joined) table.push({ rank: r, host: j.host, port: j.port });
      table.sort((a, b) => a.rank - b.rank);
      for (const [r, j] of joined) {
        control[r] = j.ch;
        await j.ch.sendJson({ table });
        await j.ch.send(shared);
      }
    } catch (e) {
      ringListener.close();
      throw e;
    } finally {
      master.close();
    }
  } else {
    const conn = await connectWithRetry(env.masterAddr, env.masterPort, timeoutMs, `rank 0 (${where})`);
    // The ring listener on the interface that reaches rank 0: the one the other ranks will use.
    ringListener = Deno.listen({ hostname: (conn.localAddr as Deno.NetAddr).hostname, port: 0 });
    try {
      const port = (ringListener.addr as Deno.NetAddr).port;
      await greetListener(
        conn,
        secret,
        { purpose: "join", rank, worldSize, port },
        `rank 0 (${where})`,
        handshakeMs,
      );
      const ch = new Channel(conn, "rank 0", left());
      const answer = await ch.recvJson<{ table?: TableEntry[]; abort?: string }>().catch((e) => {
        throw new PeerError(
          `Rank 0 did not hand out the rank table within ${timeoutMs / 1000} s: ${(e as Error).message}`,
        );
      });
      if (typeof answer.abort === "string") {
        throw new PeerError(`Rank 0 ended the rendezvous: ${answer.abort}`);
      }
      if (!Array.isArray(answer.table) || answer.table.length !== worldSize) {
        throw new PeerError(`Rank 0 sent a malformed rank table`);
      }
      table = answer.table;
      sharedOut = await ch.recv();
      control[0] = new Channel(conn, "rank 0", timeoutMs);
    } catch (e) {
      closeQuietly(conn);
      ringListener.close();
      throw e;
    }
  }
  // The ring: connect to the next rank, accept the previous one (dropping anybody else).
  const prevRank = (rank - 1 + worldSize) % worldSize;
  const nextEntry = table[(rank + 1) % worldSize];
  let prevConn: Deno.Conn | undefined;
  try {
    const [nextConn] = await Promise.all([
      (async () => {
        const c = await connectWithRetry(nextEntry.host, nextEntry.port, left(), `rank ${nextEntry.rank}`);
        await greetListener(
          c,
          secret,
          { purpose: "ring", rank, worldSize, port: 0 },
          `rank ${nextEntry.rank}`,
          handshakeMs,
        ).catch((e) => {
          closeQuietly(c);
          throw e;
        });
        return c;
      })(),
      acceptPeers(
        ringListener,
        secret,
        handshakeMs,
        left(),
        (hello, conn) => {
          if (hello.purpose !== "ring" || hello.rank !== prevRank || hello.worldSize !== worldSize) {
            throw new PeerError(
              `Rank ${hello.rank} of ${hello.worldSize} knocked on the ring where rank ${prevRank} was expected`,
            );
          }
          prevConn = conn;
          return true;
        },
        () => `Rank ${prevRank} did not connect around the ring within ${timeoutMs / 1000} s`,
        warn,
      ),
    ]);
    return {
      rank,
      worldSize,
      control,
      next: new Channel(nextConn, `rank ${nextEntry.rank}`, timeoutMs),
      prev: new Channel(prevConn!, `rank ${prevRank}`, timeoutMs),
      shared: sharedOut,
    };
  } catch (e) {
    if (prevConn) closeQuietly(prevConn);
    for (const c of control) c?.close();
    throw e;
  } finally {
    ringListener.close();
  }
}
