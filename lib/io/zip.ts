/**
 * A zip archive reader (what torch.save writes since PyTorch 1.6): the central directory, Zip64 sizes and
 * offsets, stored and deflate entries, CRC-32 checks. Entries are read on demand from a file handle, so a
 * checkpoint larger than memory allows in one piece can still be opened and only its model part read.
 * A deflated entry is sized from the directory before it is inflated, so that a zip bomb is refused
 * before it costs memory: a declared size over the caller's limit or far beyond its compressed size is
 * an error, and inflation stops at the declared size.
 */
import { inflateRawSync } from "node:zlib";

/** Random access to the bytes of an archive. */
export interface ByteSource {
  readonly size: number;
  /** `length` bytes from `offset`; throws when the source is shorter. */
  read(offset: number, length: number): Uint8Array;
  close?(): void;
}

/** A ByteSource over bytes in memory. */
export function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read(offset, length) {
      if (offset < 0 || offset + length > bytes.length) {
        throw new RangeError(`Reading ${length} bytes at ${offset} of a ${bytes.length}-byte buffer`);
      }
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** A ByteSource over an open file (synchronous positioned reads). */
export function fileSource(path: string): ByteSource {
  const file = Deno.openSync(path, { read: true });
  const size = file.statSync().size;
  return {
    size,
    read(offset, length) {
      if (offset < 0 || offset + length > size) {
        throw new RangeError(`${path}: reading ${length} bytes at ${offset} of a ${size}-byte file`);
      }
      const out = new Uint8Array(length);
      file.seekSync(offset, Deno.SeekMode.Start);
      let done = 0;
      while (done < length) {
        const n = file.readSync(out.subarray(done));
        if (n === null || n === 0) throw new Error(`${path}: the file ended after ${offset + done} bytes`);
        done += n;
      }
      return out;
    },
    close: () => file.close(),
  };
}

/** One file of the archive. */
export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** Offset of the local header. */
  headerOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_Z64_LOCATOR = 0x07064b50;
const SIG_Z64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
/**
 * The most a large deflated entry may expand (real tensors deflate to about 0.9 of their size; deflate
 * itself can reach 1032x). Entries under MAX_RATIO_FLOOR bytes are exempt: small runs of zeros are real.
 */
export const MAX_RATIO = 100;
const MAX_RATIO_FLOOR = 16 << 20;

/** Bytes inflated by this process (for tests that check a bomb was refused before inflating). */
export const zipCounters = { inflatedBytes: 0 };

const MAX32 = 0xffffffff;
const MAX16 = 0xffff;

function u64(v: DataView, at: number): number {
  const n = v.getBigUint64(at, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`A zip field of ${n} exceeds 2^53`);
  return Number(n);
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE 802.3, the zip checksum). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** True when the bytes start like a zip archive (a local file header). */
export function looksLikeZip(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
}

/** An opened archive: its entries by name, and their contents on demand. */
export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();

  constructor(readonly source: ByteSource, readonly name = "the archive") {
    this.readDirectory();
  }

  private fail(why: string): Error {
    return new Error(`${this.name} is not a readable zip archive: ${why}`);
  }

  private readDirectory(): void {
    const src = this.source;
    const tailLen = Math.min(src.size, 22 + 0xffff);
    const tail = src.read(src.size - tailLen, tailLen);
    const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === SIG_EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw this.fail("no end-of-central-directory record (truncated or not a zip file)");
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    if (count === MAX16 || cdSize === MAX32 || cdOffset === MAX32) {
      // Zip64: the locator sits just before the classic record and points at the Zip64 record.
      const locAt = src.size - tailLen + eocd - 20;
      const loc = src.read(locAt, 20);
      const lv = new DataView(loc.buffer, loc.byteOffset, 20);
      if (lv.getUint32(0, true) !== SIG_Z64_LOCATOR) throw this.fail("a Zip64 locator is missing");
      const recAt = u64(lv, 8);
      const rec = src.read(recAt, 56);
      const rv = new DataView(rec.buffer, rec.byteOffset, 56);
      if (rv.getUint32(0, true) !== SIG_Z64_EOCD) throw this.fail("the Zip64 end record is missing");
      count = u64(rv, 32);
      cdSize = u64(rv, 40);
      cdOffset = u64(rv, 48);
    }
    if (cdOffset + cdSize > src.size) {
      throw this.fail(`the central directory (${cdSize} bytes at ${cdOffset}) runs past the end`);
    }
    const cd = src.read(cdOffset, cdSize);
    const v = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
    const dec = new TextDecoder();
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || v.getUint32(p, true) !== SIG_CENTRAL) {
        throw this.fail(`central directory entry ${i} is damaged`);
      }
      const flags = v.getUint16(p + 8, true);
      const method = v.getUint16(p + 10, true);
      const crc = v.getUint32(p + 16, true);
      let csize = v.getUint32(p + 20, true);
      let usize = v.getUint32(p + 24, true);
      const nameLen = v.getUint16(p + 28, true);
      const extraLen = v.getUint16(p + 30, true);
      const commentLen = v.getUint16(p + 32, true);
      let offset = v.getUint32(p + 42, true);
      const name = dec.decode(cd.subarray(p + 46, p + 46 + nameLen));
      // Zip64 extended information: the 64-bit values of the fields that hold 0xffffffff, in order.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = v.getUint16(e, true);
        const len = v.getUint16(e + 2, true);
        if (id === 0x0001) {
          let q = e + 4;
          if (usize === MAX32) (usize = u64(v, q)), (q += 8);
          if (csize === MAX32) (csize = u64(v, q)), (q += 8);
          if (offset === MAX32) offset = u64(v, q);
        }
        e += 4 + len;
      }
      if (flags & 1) throw this.fail(`${name} is encrypted`);
      this.entries.set(name, {
        name,
        method,
        compressedSize: csize,
        size: usize,
        crc32: crc,
        headerOffset: offset,
      });
      p = extraEnd + commentLen;
    }
  }

  /** Names of the entries, in directory order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  /**
   * The uncompressed contents of an entry, checked against its CRC-32 unless `verify` is false. An
   * entry that declares more than `maxBytes` is refused before anything is read.
   */
  read(name: string, opts: { verify?: boolean; maxBytes?: number } = {}): Uint8Array {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.name} has no entry ${name}`);
    if (opts.maxBytes !== undefined && e.size > opts.maxBytes) {
      throw this.fail(`${name} declares ${e.size} bytes where at most ${opts.maxBytes} are expected`);
    }
    if (e.method === 8 && e.size > MAX_RATIO_FLOOR && e.size > e.compressedSize * MAX_RATIO) {
      throw this.fail(
        `${name} would inflate ${e.compressedSize} bytes to ${e.size} (over ${MAX_RATIO}x); ` +
          `refusing what looks like a zip bomb`,
      );
    }
    const head = this.source.read(e.headerOffset, 30);
    const hv = new DataView(head.buffer, head.byteOffset, 30);
    if (hv.getUint32(0, true) !== SIG_LOCAL) throw this.fail(`the local header of ${name} is damaged`);
    const start = e.headerOffset + 30 + hv.getUint16(26, true) + hv.getUint16(28, true);
    const raw = this.source.read(start, e.compressedSize);
    let data: Uint8Array;
    if (e.method === 0) data = raw;
    else if (e.method === 8) {
      let out: Uint8Array;
      try {
        // Never more than the directory declared: a lying size ends here, not in an out-of-memory kill.
        out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
      } catch (err) {
        if ((err as { code?: string }).code !== "ERR_BUFFER_TOO_LARGE") throw err;
        throw this.fail(`${name} inflates past the ${e.size} bytes its directory entry declares`);
      }
      zipCounters.inflatedBytes += out.byteLength;
      data = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } else {
      throw new Error(
        `${this.name}: ${name} uses compression method ${e.method}; only stored (0) and deflate (8) are read`,
      );
    }
    if (data.length !== e.size) {
      throw this.fail(`${name} holds ${data.length} bytes, the directory says ${e.size}`);
    }
    if ((opts.verify ?? true) && crc32(data) !== e.crc32) {
      throw this.fail(`${name} fails its CRC-32 check (the file is corrupt)`);
    }
    return data;
  }

  close(): void {
    this.source.close?.();
  }
}
