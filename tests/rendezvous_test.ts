/**
 * The rendezvous under hostile and broken peers: garbage, a huge announced frame, random bytes, an idle
 * connection, a slow one, an impostor without the secret and a peer of another version are dropped while
 * the real ranks join and all-reduce; a missing rank is named at the deadline on every rank; a rank never
 * joins an impostor's rendezvous; the secret is never printed.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { Channel } from "../lib/distributed/channel.ts";
import type { DistEnv } from "../lib/distributed/env.ts";
import { HostGroup } from "../lib/distributed/group.ts";
import { greetListener, greetPeer, RENDEZVOUS_VERSION } from "../lib/distributed/handshake.ts";
import { freePort } from "../lib/distributed/launch.ts";
import { acceptPeers, type Links, rendezvous } from "../lib/distributed/rendezvous.ts";
import { newSecret } from "../lib/distributed/secret.ts";
import { Rng } from "../lib/rng.ts";

function envOf(rank: number, worldSize: number, port: number): DistEnv {
  return {
    rank,
    worldSize,
    localRank: rank,
    localWorldSize: worldSize,
    nodeRank: 0,
    nodes: 1,
    masterAddr: "127.0.0.1",
    masterPort: port,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function connect(port: number): Promise<Deno.Conn> {
  for (let i = 0; i < 100; i++) {
    try {
      return await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      await sleep(20);
    }
  }
  throw new Error(`nothing listens on ${port}`);
}

async function send(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  try {
    await conn.write(bytes);
  } catch {
    // dropped by the rank: what we want
  }
}

function frame(text: string): Uint8Array {
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  return out;
}

/** Reads the challenge and answers with the right protocol but `secret` (and `version`). */
async function impostor(conn: Deno.Conn, secret: string, version = RENDEZVOUS_VERSION): Promise<string> {
  const ch = new Channel(conn, "rank 0", 5000);
  const challenge = await ch.recvJson<{ nonce: string }>();
  const hello = { purpose: "join", rank: 1, worldSize: 2, port: 1 };
  const nonce = "ab".repeat(32);
  const mac = createHmac("sha256", secret).update(
    ["client", challenge.nonce, nonce, JSON.stringify(hello)].join("|"),
  ).digest("hex");
  await ch.sendJson({ magic: "vswift-rendezvous", version, nonce, hello, mac });
  try {
    return JSON.stringify(await ch.recvJson());
  } catch (e) {
    return `refused: ${(e as Error).message}`;
  } finally {
    ch.close();
  }
}

async function allReduceWorks(links: Links[]): Promise<void> {
  const groups = links.map((l) => new HostGroup(l));
  const data = groups.map((_, r) => Float32Array.from({ length: 5 }, (_, i) => i * (r + 1)));
  await Promise.all(groups.map((g, r) => g.allReduceArray(data[r], "sum")));
  for (const d of data) assert.deepEqual([...d], [0, 3, 6, 9, 12]);
  await Promise.all(groups.map((g) => g.close()));
}

Deno.test("hostile peers at MASTER_PORT are dropped and the real ranks join", async () => {
  const port = freePort();
  const secret = newSecret();
  const warnings: string[] = [];
  const opts = { secret, timeoutMs: 20_000, handshakeMs: 1500, warn: (m: string) => warnings.push(m) };
  const rank0 = rendezvous(envOf(0, 2, port), new TextEncoder().encode("shared"), opts);
  const rng = new Rng(7);
  // Connected before rank 1: an idle peer (it used to block rank 1) and a slow one trickling bytes.
  const idle = await connect(port);
  const slow = await connect(port);
  let trickling = true;
  const trickle = (async () => {
    const bytes = frame(JSON.stringify({ magic: "vswift-rendezvous", pad: "x".repeat(200) }));
    for (let i = 0; i < bytes.length && trickling; i++) {
      await send(slow, bytes.subarray(i, i + 1));
      await sleep(50);
    }
  })();
  const attacks: Promise<unknown>[] = [];
  // The line that used to kill rank 0 ("Invalid typed array length"), and a 2^60-byte frame.
  for (const bytes of [new TextEncoder().encode("garbage\n"), frame("{}").fill(0x10, 0, 8)]) {
    const c = await connect(port);
    attacks.push(send(c, bytes));
  }
  // Random bytes, and random frames of plausible size.
  for (let i = 0; i < 6; i++) {
    const c = await connect(port);
    const n = 1 + rng.int(300);
    const bytes = Uint8Array.from({ length: n }, () => rng.int(256));
    if (i % 2 === 0) new DataView(bytes.buffer).setBigUint64(0, BigInt(Math.max(0, n - 8)), true);
    attacks.push(send(c, bytes).then(() => sleep(100)).then(() => c.close()));
  }
  // Well-formed JSON that is not a hello, an impostor, and a peer of a future version.
  const badJson = await connect(port);
  attacks.push(send(badJson, frame(JSON.stringify({ magic: "vswift-rendezvous", version: 1, hello: 3 }))));
  const impostorSaw = impostor(await connect(port), newSecret());
  const futureSaw = impostor(await connect(port), secret, RENDEZVOUS_VERSION + 1);
  await sleep(300);
  const rank1 = rendezvous(envOf(1, 2, port), new Uint8Array(), opts);
  const links = await Promise.all([rank0, rank1]);
  trickling = false;
  await trickle;
  idle.close();
  slow.close();
  assert.equal(new TextDecoder().decode(links[1].shared), "shared");
  assert.match(await impostorSaw, /^refused/);
  assert.match(await futureSaw, /^refused/);
  await Promise.allSettled(attacks);
  await allReduceWorks(links);
  // Every bad peer that finished talking before the ranks met is counted, each with a reason.
  const text = warnings.join("\n");
  assert.match(text, /announced a \d+-byte message; the limit is 4096/);
  assert.match(text, /does not know this job's secret/);
  assert.match(text, /speaks rendezvous version 2, this rank 1/);
  assert.ok(warnings.length >= 5, text);
  assert.ok(!text.includes(secret), "the secret appears in a warning");
});

Deno.test("an idle or slow peer is dropped after the handshake timeout, counted", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const secret = newSecret();
  const warnings: string[] = [];
  const waiting = acceptPeers(
    listener,
    secret,
    300,
    20_000,
    (hello) => hello.rank === 3,
    () => "late",
    (m) => warnings.push(m),
  );
  const idle = await connect(port);
  const slow = await connect(port);
  const bytes = frame("x".repeat(100));
  for (let i = 0; i < 12; i++) {
    await send(slow, bytes.subarray(i, i + 1));
    await sleep(50);
  }
  // Both are gone by now; the listener still takes the rank it waits for.
  const good = await connect(port);
  await greetListener(good, secret, { purpose: "ring", rank: 3, worldSize: 4, port: 0 }, "rank 2", 5000);
  const { dropped } = await waiting;
  assert.equal(dropped, 2, warnings.join("\n"));
  assert.equal(warnings.filter((w) => /did not finish the handshake within 0.3 s/.test(w)).length, 2);
  for (const c of [idle, slow, good]) c.close();
  listener.close();
});

Deno.test("a rank that never comes is named by every rank at the deadline", async () => {
  const port = freePort();
  const opts = { secret: newSecret(), timeoutMs: 1500, handshakeMs: 500, warn: () => {} };
  const results = await Promise.allSettled([
    rendezvous(envOf(0, 3, port), new Uint8Array(), opts),
    (async () => {
      await sleep(100);
      return await rendezvous(envOf(1, 3, port), new Uint8Array(), opts);
    })(),
  ]);
  for (const r of results) {
    assert.equal(r.status, "rejected");
    assert.match(
      String((r as PromiseRejectedResult).reason),
      /timed out after 1.5 s.*rank\(s\) 2 never joined/,
    );
  }
});

Deno.test("a rank does not join a rendezvous that does not know the secret", async () => {
  const port = freePort();
  const fake = Deno.listen({ hostname: "127.0.0.1", port });
  // The impostor plays rank 0 with the right protocol and a guessed secret.
  const serving = (async () => {
    const conn = await fake.accept();
    try {
      await greetPeer(conn, newSecret(), 5000);
    } catch (e) {
      return (e as Error).message;
    }
    conn.close();
    return "accepted";
  })();
  const joining = rendezvous(envOf(1, 2, port), new Uint8Array(), {
    secret: newSecret(),
    timeoutMs: 10_000,
    handshakeMs: 2000,
  });
  await assert.rejects(joining, /refused this rank|does not know this job's secret/);
  assert.match(await serving, /does not know this job's secret/);
  fake.close();
});

Deno.test("without VSWIFT_DIST_SECRET a rank refuses to rendezvous and says how to set it", async () => {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { rendezvous } from "${new URL("../lib/distributed/rendezvous.ts", import.meta.url)}";` +
      `await rendezvous({ rank: 1, worldSize: 2, localRank: 1, localWorldSize: 2, nodeRank: 0, nodes: 1, ` +
      `masterAddr: "127.0.0.1", masterPort: ${freePort()} }, new Uint8Array(), { timeoutMs: 1000 });`,
    ],
    env: { VSWIFT_DIST_SECRET: "" },
    stdout: "piped",
    stderr: "piped",
  });
  const out = await cmd.output();
  assert.notEqual(out.code, 0);
  assert.match(new TextDecoder().decode(out.stderr), /VSWIFT_DIST_SECRET is not set.*openssl rand -hex 32/);
});
