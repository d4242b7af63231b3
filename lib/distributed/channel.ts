/**
 * A framed TCP connection between two ranks: each message is an 8-byte little-endian length and the
 * bytes. Every receive has a deadline, and a closed peer becomes an error that names its rank, so a
 * dead or stuck process ends the others with a message instead of a hang.
 */

export class PeerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PeerError";
  }
}

export class Channel {
  private closed = false;

  constructor(
    private readonly conn: Deno.Conn,
    /** "rank 3" and the like, for messages. */
    readonly peer: string,
    private readonly timeoutMs: number,
  ) {}

  private async readExactly(buf: Uint8Array): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      let n: number | null;
      try {
        n = await this.conn.read(buf.subarray(off));
      } catch (e) {
        throw new PeerError(`Lost the connection to ${this.peer}: ${(e as Error).message} (did it die?)`);
      }
      if (n === null) throw new PeerError(`${this.peer} closed its connection (it exited or died)`);
      off += n;
    }
  }

  private async writeAll(buf: Uint8Array): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      try {
        off += await this.conn.write(buf.subarray(off));
      } catch (e) {
        throw new PeerError(`Cannot send to ${this.peer}: ${(e as Error).message} (did it die?)`);
      }
    }
  }

  async send(data: Uint8Array): Promise<void> {
    const head = new Uint8Array(8);
    new DataView(head.buffer).setBigUint64(0, BigInt(data.length), true);
    await this.writeAll(head);
    await this.writeAll(data);
  }

  /** Receives one message into `into` (which must be its exact size) or a new buffer. */
  async recv(into?: Uint8Array): Promise<Uint8Array> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.close();
        reject(new PeerError(`${this.peer} sent nothing for ${this.timeoutMs / 1000} s (stuck or dead)`));
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([this.recvNow(into), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async recvNow(into?: Uint8Array): Promise<Uint8Array> {
    const head = new Uint8Array(8);
    await this.readExactly(head);
    const n = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (into && into.length !== n) {
      throw new PeerError(
        `${this.peer} sent ${n} bytes where ${into.length} were expected (the ranks disagree)`,
      );
    }
    const buf = into ?? new Uint8Array(n);
    await this.readExactly(buf);
    return buf;
  }

  async sendJson(v: unknown): Promise<void> {
    await this.send(new TextEncoder().encode(JSON.stringify(v)));
  }

  async recvJson<T>(): Promise<T> {
    return JSON.parse(new TextDecoder().decode(await this.recv())) as T;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed by the peer
    }
  }
}

/** Connects to host:port, retrying while the listener is not up yet, until `timeoutMs`. */
export async function connectWithRetry(
  hostname: string,
  port: number,
  timeoutMs: number,
  what: string,
): Promise<Deno.Conn> {
  const start = Date.now();
  let last = "";
  while (Date.now() - start < timeoutMs) {
    try {
      const c = await Deno.connect({ hostname, port });
      c.setNoDelay(true);
      return c;
    } catch (e) {
      last = (e as Error).message;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new PeerError(`Could not reach ${what} at ${hostname}:${port} within ${timeoutMs / 1000} s: ${last}`);
}
