/**
 * TensorBoard event files, written by hand: a TFRecord stream (length, masked CRC32C of the length,
 * payload, masked CRC32C of the payload) of `Event` protocol buffers carrying scalar and PNG image
 * summaries. File name and first event (file_version "brain.Event:2") follow what TensorBoard scans for.
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC32C (Castagnoli), as TFRecord uses. */
export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 and add a constant, so CRCs of CRCs stay distinct. */
export function maskedCrc(data: Uint8Array): number {
  const c = crc32c(data);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** A minimal protocol-buffer writer: varints, doubles, floats, length-delimited fields. */
class Proto {
  private parts: number[] = [];

  private varint(v: number | bigint): void {
    let x = BigInt(v);
    while (x >= 0x80n) {
      this.parts.push(Number((x & 0x7fn) | 0x80n));
      x >>= 7n;
    }
    this.parts.push(Number(x));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number): this {
    this.tag(field, 0);
    this.varint(v);
    return this;
  }

  double(field: number, v: number): this {
    this.tag(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.parts.push(...b);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(...b);
    return this;
  }

  bytes(field: number, v: Uint8Array): this {
    this.tag(field, 2);
    this.varint(v.length);
    for (let i = 0; i < v.length; i++) this.parts.push(v[i]);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Proto): this {
    return this.bytes(field, m.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

function record(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + payload.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(payload.length), true);
  view.setUint32(8, maskedCrc(out.subarray(0, 8)), true);
  out.set(payload, 12);
  view.setUint32(12 + payload.length, maskedCrc(payload), true);
  return out;
}

/** Appends scalar and image summaries to one event file in `dir`. */
export class TensorBoardWriter {
  readonly path: string;
  private file: Deno.FsFile;

  constructor(dir: string) {
    Deno.mkdirSync(dir, { recursive: true });
    const host = Deno.hostname().replace(/[^A-Za-z0-9.-]/g, "_");
    this.path = `${dir}/events.out.tfevents.${Math.floor(Date.now() / 1000)}.${host}.${Deno.pid}`;
    this.file = Deno.openSync(this.path, { write: true, create: true, append: true });
    this.write(new Proto().double(1, Date.now() / 1000).string(3, "brain.Event:2"));
  }

  private write(event: Proto): void {
    this.file.writeSync(record(event.finish()));
  }

  /** One scalar at a step. */
  scalar(tag: string, value: number, step: number): void {
    const v = new Proto().string(1, tag).float(2, value);
    this.write(new Proto().double(1, Date.now() / 1000).int(2, step).message(5, new Proto().message(1, v)));
  }

  /** A PNG image (already encoded) of the given size at a step. */
  image(tag: string, png: Uint8Array, width: number, height: number, step: number): void {
    const img = new Proto().int(1, height).int(2, width).int(3, 3).bytes(4, png);
    const v = new Proto().string(1, tag).message(4, img);
    this.write(new Proto().double(1, Date.now() / 1000).int(2, step).message(5, new Proto().message(1, v)));
  }

  flush(): void {
    this.file.syncSync();
  }

  close(): void {
    this.file.close();
  }
}

export interface ReadEvent {
  step: number;
  wallTime: number;
  fileVersion?: string;
  scalars: { tag: string; value: number }[];
  images: { tag: string; width: number; height: number; png: Uint8Array }[];
}

/** Reads an event file back, checking every CRC (for tests and for tools that inspect runs). */
export function readEvents(bytes: Uint8Array): ReadEvent[] {
  const out: ReadEvent[] = [];
  let pos = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  while (pos < bytes.length) {
    if (pos + 12 > bytes.length) throw new Error(`Event file truncated at byte ${pos}`);
    const len = Number(view.getBigUint64(pos, true));
    if (view.getUint32(pos + 8, true) !== maskedCrc(bytes.subarray(pos, pos + 8))) {
      throw new Error(`Bad length CRC at byte ${pos}`);
    }
    const payload = bytes.subarray(pos + 12, pos + 12 + len);
    if (view.getUint32(pos + 12 + len, true) !== maskedCrc(payload)) {
      throw new Error(`Bad data CRC at byte ${pos}`);
    }
    out.push(parseEvent(payload));
    pos += 16 + len;
  }
  return out;
}

function fields(buf: Uint8Array): [number, number | Uint8Array | bigint][] {
  const out: [number, number | Uint8Array | bigint][] = [];
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const varint = () => {
    let x = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[pos++];
      x |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return x;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const field = key >> 3;
    switch (key & 7) {
      case 0:
        out.push([field, varint()]);
        break;
      case 1:
        out.push([field, view.getFloat64(pos, true)]);
        pos += 8;
        break;
      case 2: {
        const n = Number(varint());
        out.push([field, buf.subarray(pos, pos + n)]);
        pos += n;
        break;
      }
      case 5:
        out.push([field, view.getFloat32(pos, true)]);
        pos += 4;
        break;
      default:
        throw new Error(`Unsupported protobuf wire type ${key & 7}`);
    }
  }
  return out;
}

function parseEvent(buf: Uint8Array): ReadEvent {
  const ev: ReadEvent = { step: 0, wallTime: 0, scalars: [], images: [] };
  const text = (b: unknown) => new TextDecoder().decode(b as Uint8Array);
  for (const [f, v] of fields(buf)) {
    if (f === 1) ev.wallTime = v as number;
    else if (f === 2) ev.step = Number(v);
    else if (f === 3) ev.fileVersion = text(v);
    else if (f === 5) {
      for (const [sf, sv] of fields(v as Uint8Array)) {
        if (sf !== 1) continue;
        let tag = "";
        let scalar: number | undefined;
        let image: ReadEvent["images"][number] | undefined;
        for (const [vf, vv] of fields(sv as Uint8Array)) {
          if (vf === 1) tag = text(vv);
          else if (vf === 2) scalar = vv as number;
          else if (vf === 4) {
            image = { tag: "", width: 0, height: 0, png: new Uint8Array() };
            for (const [imf, imv] of fields(vv as Uint8Array)) {
              if (imf === 1) image.height = Number(imv);
              else if (imf === 2) image.width = Number(imv);
              else if (imf === 4) image.png = imv as Uint8Array;
            }
          }
        }
        if (scalar !== undefined) ev.scalars.push({ tag, value: scalar });
        if (image) ev.images.push({ ...image, tag });
      }
    }
  }
  return ev;
}
