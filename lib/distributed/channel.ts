/**
 * A framed TCP connection between two ranks: each message is an 8-byte little-endian length and the
 * bytes. Every receive has a deadline and a size limit, and a closed peer becomes an error that names
 * its rank, so a dead, stuck or hostile process ends the others with a message instead of a hang (or an
 * allocation of whatever length it claims).
 */

/** The largest message received without a buffer of known size (rank tables, JSON): 1 MiB. */
export const MAX_FRAME = 1 << 20;

export class PeerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PeerError";
  }
}

/** Closes a connection or listener that may be closed already. */
export function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

export class Channel {
  private closed = false;

  constructor(
    private readonly conn: Deno.Conn,
    /** "rank 3" and the like, for messages. */
    readonly peer: string,
    private readonly timeoutMs: number,
    /** The largest message accepted when no buffer of the expected size is given. */
    private readonly maxFrame = MAX_FRAME,
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
    const declared = new DataView(head.buffer).getBigUint64(0, true);
    const n = Number(declared);
    if (!into && declared > BigInt(this.maxFrame)) {
      this.close();
      throw new PeerError(
        `${this.peer} announced a ${declared}-byte message; the limit is ${this.maxFrame} (not a vswift rank?)`,
      );
    }
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
    const bytes = await this.recv();
    try {
      return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) as T;
    } catch {
      throw new PeerError(`${this.peer} sent a malformed message (${bytes.length} bytes that are not JSON)`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeQuietly(this.conn);
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
