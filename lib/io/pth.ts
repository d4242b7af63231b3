/**
 * PyTorch checkpoints (`torch.save` files, .pth / .pt / .bin) read in TypeScript, without Python: the zip
 * format of PyTorch 1.6 and later (a data.pkl pickle plus one entry per storage) and the older legacy
 * format (a run of pickles followed by the raw storages). Tensors come back as PthTensor views of their
 * storage (offset, size, stride), whose bytes are read when first asked for.
 *
 * ```ts
 * const ckpt = openPth("checkpoint-799.pth");
 * const { key, tensors } = stateDictOf(ckpt.root); // "model" (or "module") and its tensors by name
 * const st = tensors.get("blocks.0.attn.qkv.weight")!.toSafeTensor();
 * ckpt.close();
 * ```
 */
import { numelOf } from "../tensor.ts";
import { describe, globalOf, type PyGlobal, unpickle } from "./pickle.ts";
import { ELEM_BYTES, type SafeDType, type SafeTensor } from "./safetensors.ts";
import { fileSource, looksLikeZip, memorySource, ZipReader } from "./zip.ts";

/** torch.*Storage class names to element types. */
const STORAGE_DTYPES: Record<string, SafeDType> = {
  FloatStorage: "F32",
  DoubleStorage: "F64",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
  UntypedStorage: "U8",
};

/** torch dtype names (torch.float32, ...) to element types. */
const TORCH_DTYPES: Record<string, SafeDType> = {
  float32: "F32",
  float: "F32",
  float64: "F64",
  double: "F64",
  float16: "F16",
  half: "F16",
  bfloat16: "BF16",
  int64: "I64",
  long: "I64",
  int32: "I32",
  int: "I32",
  int16: "I16",
  short: "I16",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/** One storage of the checkpoint: a flat typed buffer, loaded on first use. */
export class PthStorage {
  private data?: Uint8Array;
  constructor(
    readonly dtype: SafeDType,
    readonly key: string,
    readonly numel: number,
    private readonly load: () => Uint8Array,
  ) {}

  /** The storage's bytes (numel x element size). */
  bytes(): Uint8Array {
    if (!this.data) {
      const d = this.load();
      const want = this.numel * ELEM_BYTES[this.dtype];
      if (d.length < want) {
        throw new Error(
          `Storage ${this.key} holds ${d.length} bytes; ${this.numel} ${this.dtype} need ${want}`,
        );
      }
      this.data = d;
    }
    return this.data;
  }
}

/** A tensor of the checkpoint: a strided view of a storage. */
export class PthTensor {
  constructor(
    readonly storage: PthStorage,
    readonly dtype: SafeDType,
    /** In elements of the storage. */
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
    readonly requiresGrad = false,
  ) {
    if (shape.length !== stride.length) {
      throw new RangeError(`A tensor of shape [${shape}] has strides [${stride}]`);
    }
    const n = this.numel;
    if (n > 0) {
      let last = offset;
      for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * stride[i];
      const avail = (storage.numel * ELEM_BYTES[storage.dtype]) / ELEM_BYTES[dtype];
      if (offset < 0 || last >= avail) {
        throw new RangeError(
          `A tensor of shape [${shape}], stride [${stride}] at offset ${offset} reads past storage ${storage.key} of ${avail} elements`,
        );
      }
    }
  }

  get numel(): number {
    return numelOf(this.shape);
  }

  /** Row-major and dense (dimensions of size 1 may have any stride). */
  get contiguous(): boolean {
    let expected = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.stride[i] !== expected) return false;
      expected *= this.shape[i];
    }
    return true;
  }

  /** Dense row-major little-endian bytes: a slice of the storage, or a copy by strides. */
  bytes(): Uint8Array {
    const es = ELEM_BYTES[this.dtype];
    const n = this.numel;
    const src = this.storage.bytes();
    if (this.contiguous) return src.slice(this.offset * es, (this.offset + n) * es);
    const out = new Uint8Array(n * es);
    const nd = this.shape.length;
    const idx = new Array<number>(nd).fill(0);
    let at = this.offset;
    for (let i = 0; i < n; i++) {
      out.set(src.subarray(at * es, (at + 1) * es), i * es);
      for (let d = nd - 1; d >= 0; d--) {
        idx[d]++;
        at += this.stride[d];
        if (idx[d] < this.shape[d]) break;
        at -= this.stride[d] * this.shape[d];
        idx[d] = 0;
      }
    }
    return out;
  }

  /** The tensor as a safetensors entry (same dtype, dense bytes). */
  toSafeTensor(): SafeTensor {
    return { dtype: this.dtype, shape: [...this.shape], data: this.bytes() };
  }
}

/** An opened checkpoint: the unpickled root object, with tensors as PthTensor. */
export interface PthCheckpoint {
  format: "zip" | "legacy";
  root: unknown;
  source: string;
  /** Releases the file (storages not read yet can no longer be read). */
  close(): void;
}

function intOf(v: unknown, what: string, source: string): number {
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) {
    throw new Error(`${source}: ${what} should be an integer, got ${describe(v)}`);
  }
  return n;
}

function intsOf(v: unknown, what: string, source: string): number[] {
  if (!Array.isArray(v)) throw new Error(`${source}: ${what} should be a tuple, got ${describe(v)}`);
  return v.map((x, i) => intOf(x, `${what}[${i}]`, source));
}

/** The pickle hooks common to both formats: tensor rebuilders and storage types. */
function torchResolver(source: string) {
  const rebuild = (args: unknown[], dtypeOverride?: SafeDType) => {
    const storage = args[0];
    if (!(storage instanceof PthStorage)) {
      throw new Error(`${source}: a tensor is rebuilt from a ${describe(storage)}, not a storage`);
    }
    return new PthTensor(
      storage,
      dtypeOverride ?? storage.dtype,
      intOf(args[1], "storage offset", source),
      intsOf(args[2], "size", source),
      intsOf(args[3], "stride", source),
      args[4] === true,
    );
  };
  return (g: PyGlobal) => {
    if (g.module === "torch._utils" || g.module === "torch._tensor" || g.module === "torch") {
      switch (g.name) {
        case "_rebuild_tensor":
        case "_rebuild_tensor_v2":
          return { call: (a: unknown[]) => rebuild(a) };
        case "_rebuild_tensor_v3": {
          return {
            call: (a: unknown[]) => {
              const d = globalOf(a[6]);
              const dt = d && TORCH_DTYPES[d.name];
              if (!dt) throw new Error(`${source}: tensor dtype ${describe(a[6])} is not supported`);
              return rebuild(a, dt);
            },
          };
        }
        case "_rebuild_parameter":
        case "_rebuild_parameter_with_state":
          return { call: (a: unknown[]) => a[0] };
        case "_rebuild_from_type_v2":
          // (function, subclass, arguments, state): the function's result is the tensor.
          return {
            call: (a: unknown[]) => {
              const fn = globalOf(a[0]);
              if (fn?.name.startsWith("_rebuild_tensor") && Array.isArray(a[2])) return rebuild(a[2]);
              return a[2];
            },
          };
      }
    }
    return undefined;
  };
}

/** ('storage', storage type, key, location, numel[, view metadata]) -> the storage type's dtype. */
function storageDtype(pid: unknown[], source: string): SafeDType {
  const g = globalOf(pid[1]);
  const dt = g && STORAGE_DTYPES[g.name];
  if (!dt) throw new Error(`${source}: storage type ${describe(pid[1])} is not supported`);
  return dt;
}

function checkPid(pid: unknown, source: string): unknown[] {
  if (!Array.isArray(pid) || pid[0] !== "storage" || pid.length < 5) {
    throw new Error(`${source}: unexpected persistent id ${JSON.stringify(pid, (_, v) => String(v))}`);
  }
  return pid;
}

/** A data.pkl describes tensors (about 100 bytes each), never their contents. */
const MAX_PICKLE_BYTES = 256 << 20;

function readZip(zip: ZipReader, source: string): PthCheckpoint {
  const pkl = zip.names().find((n) => n === "data.pkl" || n.endsWith("/data.pkl"));
  if (!pkl) throw new Error(`${source} is a zip file without a data.pkl: not a PyTorch checkpoint`);
  const prefix = pkl.slice(0, pkl.length - "data.pkl".length);
  const storages = new Map<string, PthStorage>();
  const { value } = unpickle(zip.read(pkl, { maxBytes: MAX_PICKLE_BYTES }), {
    source: `${source} (${pkl})`,
    resolve: torchResolver(source),
    persistentLoad: (raw) => {
      const pid = checkPid(raw, source);
      const key = String(pid[2]);
      let s = storages.get(key);
      if (!s) {
        const dtype = storageDtype(pid, source);
        const numel = intOf(pid[4], "storage size", source);
        const entry = `${prefix}data/${key}`;
        const maxBytes = numel * ELEM_BYTES[dtype];
        s = new PthStorage(dtype, key, numel, () => zip.read(entry, { maxBytes }));
        storages.set(key, s);
      }
      return s;
    },
  });
  return { format: "zip", root: value, source, close: () => zip.close() };
}

function readLegacy(bytes: Uint8Array, source: string): PthCheckpoint {
  const resolve = torchResolver(source);
  const magic = unpickle(bytes, { source });
  if (magic.value !== LEGACY_MAGIC) {
    throw new Error(`${source} is neither a zip archive nor a legacy torch.save file`);
  }
  const proto = unpickle(bytes, { source, offset: magic.end });
  if (proto.value !== 1001) throw new Error(`${source}: legacy format version ${proto.value}, expected 1001`);
  const sys = unpickle(bytes, { source, offset: proto.end });
  if (sys.value instanceof Map && sys.value.get("little_endian") === false) {
    throw new Error(`${source} was written on a big-endian machine; only little-endian files are read`);
  }
  const storages = new Map<string, PthStorage>();
  const data = new Map<string, Uint8Array>();
  const main = unpickle(bytes, {
    source,
    offset: sys.end,
    resolve,
    persistentLoad: (raw) => {
      const pid = checkPid(raw, source);
      const key = String(pid[2]);
      const dtype = storageDtype(pid, source);
      let root = storages.get(key);
      if (!root) {
        root = new PthStorage(dtype, key, intOf(pid[4], "storage size", source), () => {
          const d = data.get(key);
          if (!d) throw new Error(`${source}: storage ${key} has no data`);
          return d;
        });
        storages.set(key, root);
      }
      const view = pid[5];
      if (Array.isArray(view) && view.length === 3) {
        // A view of a root storage (older files): (view key, offset, size) in elements.
        const [vkey, off, size] = [
          String(view[0]),
          intOf(view[1], "view offset", source),
          intOf(view[2], "view size", source),
        ];
        const es = ELEM_BYTES[dtype];
        const parent = root;
        return new PthStorage(dtype, vkey, size, () => parent.bytes().subarray(off * es, (off + size) * es));
      }
      return root;
    },
  });
  const keys = unpickle(bytes, { source, offset: main.end });
  if (!Array.isArray(keys.value)) throw new Error(`${source}: the storage key list is missing`);
  let p = keys.end;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const k of keys.value) {
    const key = String(k);
    const s = storages.get(key);
    if (!s) throw new Error(`${source}: storage ${key} is listed but never used`);
    if (p + 8 > bytes.length) throw new Error(`${source} ends before storage ${key} (truncated file)`);
    const numel = Number(dv.getBigInt64(p, true));
    const len = numel * ELEM_BYTES[s.dtype];
    p += 8;
    if (p + len > bytes.length) throw new Error(`${source} ends inside storage ${key} (truncated file)`);
    data.set(key, bytes.subarray(p, p + len));
    p += len;
  }
  return { format: "legacy", root: main.value, source, close: () => {} };
}

/** Reads a checkpoint from bytes in memory. */
export function decodePth(bytes: Uint8Array, source = "the checkpoint"): PthCheckpoint {
  if (looksLikeZip(bytes)) return readZip(new ZipReader(memorySource(bytes), source), source);
  return readLegacy(bytes, source);
}

/**
 * Opens a checkpoint file. Zip files are read entry by entry from disk (only the storages that are used
 * are read); legacy files are read whole.
 */
export function openPth(path: string): PthCheckpoint {
  let head: Uint8Array;
  try {
    const f = Deno.openSync(path, { read: true });
    head = new Uint8Array(4);
    f.readSync(head);
    f.close();
  } catch (e) {
    throw new Error(`Cannot read the checkpoint ${path}: ${(e as Error).message}`);
  }
  if (looksLikeZip(head)) {
    const zip = new ZipReader(fileSource(path), path);
    try {
      return readZip(zip, path);
    } catch (e) {
      zip.close();
      throw e;
    }
  }
  return readLegacy(Deno.readFileSync(path), path);
}

/** The PthTensor values of a dict with string keys, in order. */
export function tensorsOf(dict: unknown): Map<string, PthTensor> {
  const out = new Map<string, PthTensor>();
  if (dict instanceof Map) {
    for (const [k, v] of dict) if (typeof k === "string" && v instanceof PthTensor) out.set(k, v);
  }
  return out;
}

/**
 * The state dict of a checkpoint: the first of `keys` ("model", then "module", as V-SWIFT's
 * --model_key) that the root dict has, else the root itself when it holds tensors.
 */
export function stateDictOf(
  root: unknown,
  keys: readonly string[] = ["model", "module"],
  source = "the checkpoint",
): { key?: string; tensors: Map<string, PthTensor>; skipped: string[] } {
  if (!(root instanceof Map)) {
    throw new Error(`${source} holds a ${describe(root)}, not a dict; cannot find a state dict in it`);
  }
  let key: string | undefined;
  let dict: Map<unknown, unknown> = root;
  for (const k of keys) {
    if (root.get(k) instanceof Map) {
      key = k;
      dict = root.get(k) as Map<unknown, unknown>;
      break;
    }
  }
  const tensors = tensorsOf(dict);
  const skipped = [...dict.keys()].filter((k) => !tensors.has(k as string)).map(String);
  if (tensors.size === 0) {
    throw new Error(
      `${source} has no tensors under ${keys.map((k) => `"${k}"`).join(" or ")} nor at its top level ` +
        `(keys: ${[...root.keys()].map(String).slice(0, 12).join(", ")})`,
    );
  }
  return { key, tensors, skipped };
}

/** Dense safetensors entries of PthTensors (reads their storages). */
export function toSafeTensors(tensors: Map<string, PthTensor>): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  for (const [k, t] of tensors) out.set(k, t.toSafeTensor());
  return out;
}
