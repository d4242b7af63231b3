/**
 * A pickle reader: a stack machine over the opcodes of protocols 0 to 5, enough for what torch.save
 * writes (protocol 2 by default) and for the argparse namespaces, optimiser states and numbers that
 * training checkpoints carry. Nothing is imported or executed: a global names a class or function, and
 * the caller's `resolve` hook decides what calling it means (torch's tensor rebuilders, OrderedDict);
 * anything else becomes an inert PyObject that records its class, arguments and state.
 *
 * Python values map to: None -> null, bool -> boolean, int -> number (bigint beyond 2^53), float ->
 * number, str -> string, bytes -> Uint8Array, list and tuple -> Array, dict -> Map, set -> Set.
 */

/** A module-level name (GLOBAL / STACK_GLOBAL). */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of a class the reader does not model: its class, constructor arguments and state. */
export class PyObject {
  state: unknown = undefined;
  /** Items added by APPENDS / SETITEMS after construction (lists and dicts of subclasses). */
  items: unknown[] = [];
  dictItems = new Map<unknown, unknown>();
  constructor(readonly cls: PyGlobal, readonly args: unknown[]) {}
}

/** What a global does when the pickle calls it (REDUCE, NEWOBJ), or its value (a persistent id type). */
export interface GlobalHandler {
  call?: (args: unknown[]) => unknown;
}

export interface UnpickleOptions {
  /** Maps a global to a handler; undefined leaves it a PyGlobal (calling it makes a PyObject). */
  resolve?: (g: PyGlobal) => GlobalHandler | undefined;
  /** BINPERSID / PERSID: turns a persistent id into its object (torch's storages). */
  persistentLoad?: (pid: unknown) => unknown;
  /** Where the pickle came from, for messages. */
  source?: string;
  /** Where to start reading (several pickles may follow one another). */
  offset?: number;
}

/** Python's attributes of a dict subclass instance, kept beside the Map (an OrderedDict's _metadata). */
export const PY_ATTRS = Symbol("python attributes");

/** A global on the stack: its name and what calling it does (when the reader models it). */
export class PyCallable {
  constructor(readonly global: PyGlobal, readonly handler: GlobalHandler | undefined) {}
}

/** The global a stack value names, if it is one (storage types and dtypes inside persistent ids). */
export function globalOf(v: unknown): PyGlobal | undefined {
  return v instanceof PyCallable ? v.global : v instanceof PyGlobal ? v : undefined;
}

const latin1Bytes = (s: string) => Uint8Array.from(s, (ch) => ch.charCodeAt(0) & 0xff);

/** Python built-ins the reader models whatever the caller's hook says. */
function builtin(g: PyGlobal): GlobalHandler | undefined {
  const mod = g.module === "__builtin__" ? "builtins" : g.module === "copy_reg" ? "copyreg" : g.module;
  switch (`${mod}.${g.name}`) {
    case "collections.OrderedDict":
    case "builtins.dict":
      return {
        call: (args) => {
          const m = new Map<unknown, unknown>();
          const pairs = args[0];
          if (Array.isArray(pairs)) {
            for (const kv of pairs) if (Array.isArray(kv)) m.set(hashable(kv[0]), kv[1]);
          }
          return m;
        },
      };
    case "builtins.set":
    case "builtins.frozenset":
      return { call: (args) => new Set(Array.isArray(args[0]) ? args[0].map(hashable) : []) };
    case "builtins.list":
      return { call: (args) => (Array.isArray(args[0]) ? [...args[0]] : []) };
    case "builtins.tuple":
      return { call: (args) => (Array.isArray(args[0]) ? [...args[0]] : []) };
    case "builtins.bytearray":
    case "builtins.bytes":
      return {
        call: (args) =>
          args[0] instanceof Uint8Array
            ? args[0]
            : typeof args[0] === "string"
            ? latin1Bytes(args[0])
            : Array.isArray(args[0])
            ? Uint8Array.from(args[0] as number[])
            : new Uint8Array(0),
      };
    case "_codecs.encode":
      // Protocol 2 writes bytes as encode(text, "latin1").
      return {
        call: (args) => {
          const text = String(args[0] ?? "");
          const enc = String(args[1] ?? "utf-8").toLowerCase().replace("_", "-");
          return enc === "latin1" || enc === "latin-1" || enc === "iso-8859-1"
            ? latin1Bytes(text)
            : new TextEncoder().encode(text);
        },
      };
    case "copyreg._reconstructor":
      return { call: (args) => new PyObject(globalOf(args[0]) ?? new PyGlobal("?", "?"), []) };
    default:
      return undefined;
  }
}

/** Reads one pickle; returns its value and the offset just after its STOP. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions = {}): { value: unknown; end: number } {
  const src = opts.source ?? "the pickle";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder();
  const latin1 = new TextDecoder("latin1");
  let p = opts.offset ?? 0;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (why: string): Error => new Error(`Cannot read ${src} at byte ${p}: ${why}`);
  const need = (n: number) => {
    if (p + n > bytes.length) throw fail(`it ends ${p + n - bytes.length} bytes early (truncated file)`);
  };
  const u8 = () => (need(1), bytes[p++]);
  const u16 = () => (need(2), (p += 2), view.getUint16(p - 2, true));
  const i32 = () => (need(4), (p += 4), view.getInt32(p - 4, true));
  const u32 = () => (need(4), (p += 4), view.getUint32(p - 4, true));
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(p, true);
    p += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`a length of ${v} bytes`);
    return Number(v);
  };
  const take = (n: number) => (need(n), (p += n), bytes.subarray(p - n, p));
  const line = () => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0) throw fail("a text opcode has no end of line");
    const s = latin1.decode(bytes.subarray(p, end));
    p = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0) throw fail("the stack is empty");
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) throw fail("the stack is empty");
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) throw fail("no MARK to pop to");
    stack = prev;
    return items;
  };
  const makeGlobal = (module: string, name: string) => {
    const g = new PyGlobal(module, name);
    return new PyCallable(g, opts.resolve?.(g) ?? builtin(g));
  };
  const call = (fn: unknown, args: unknown[]): unknown => {
    if (fn instanceof PyCallable) {
      if (fn.handler?.call) return fn.handler.call(args);
      return new PyObject(fn.global, args);
    }
    throw fail(`calling a ${describe(fn)}, which is not a class or function`);
  };
  const setItems = (target: unknown, kv: unknown[]) => {
    if (kv.length % 2) throw fail("SETITEMS with an odd number of values");
    const map = target instanceof Map ? target : target instanceof PyObject ? target.dictItems : undefined;
    if (!map) throw fail(`setting items on a ${describe(target)}`);
    for (let i = 0; i < kv.length; i += 2) map.set(hashable(kv[i]), kv[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (Array.isArray(target)) target.push(...items);
    else if (target instanceof PyObject) target.items.push(...items);
    else if (target instanceof Set) { for (const x of items) target.add(hashable(x)); }
    else throw fail(`appending to a ${describe(target)}`);
  };
  const longFrom = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return Number.isSafeInteger(Number(v)) && BigInt(Number(v)) === v ? Number(v) : v;
  };
  const intFromText = (s: string): number | bigint | boolean => {
    const t = s.trim().replace(/L$/, "");
    if (t === "00") return false;
    if (t === "01") return true;
    const v = BigInt(t);
    return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw fail("a pickle protocol above 5");
        break;
      case 0x95: // FRAME: a length prefix only, the opcodes follow inline
        p += 8;
        break;
      case 0x2e: // STOP
        return { value: pop(), end: p };
      case 0x28: // MARK
        marks.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x8a: // LONG1
        stack.push(longFrom(take(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(longFrom(take(i32())));
        break;
      case 0x49: // INT (text)
        stack.push(intFromText(line()));
        break;
      case 0x4c: // LONG (text)
        stack.push(intFromText(line()));
        break;
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(p, false));
        p += 8;
        break;
      case 0x46: // FLOAT (text)
        stack.push(Number(line()));
        break;
      case 0x58: // BINUNICODE
        stack.push(dec.decode(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(dec.decode(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(dec.decode(take(u64())));
        break;
      case 0x56: // UNICODE (raw-unicode-escape text)
        stack.push(line().replace(/\\u([0-9a-fA-F]{4})/g, (_, h) => String.fromCharCode(parseInt(h, 16))));
        break;
      case 0x54: // BINSTRING (Python 2 str)
        stack.push(latin1.decode(take(i32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(take(u8())));
        break;
      case 0x53: { // STRING (quoted text)
        const s = line().trim();
        stack.push(s.slice(1, -1));
        break;
      }
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64()).slice());
        break;
      case 0x96: // BYTEARRAY8
        stack.push(take(u64()).slice());
        break;
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        throw fail("out-of-band buffers (protocol 5) are not supported");
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x6c: // LIST
      case 0x74: { // TUPLE
        // popMark() replaces `stack`, so it must run before the push is looked up.
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x64: { // DICT
        const d = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x91: { // FROZENSET
        const items = popMark();
        stack.push(new Set(items.map(hashable)));
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x90: { // ADDITEMS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: // PUT (text)
        memo.set(Number(line()), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: // LONG_BINGET
      case 0x67: { // GET (text)
        const key = op === 0x68 ? u8() : op === 0x6a ? u32() : Number(line());
        if (!memo.has(key)) throw fail(`memo entry ${key} was never stored`);
        stack.push(memo.get(key));
        break;
      }
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        stack.push(makeGlobal(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          throw fail("STACK_GLOBAL without strings");
        }
        stack.push(makeGlobal(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!Array.isArray(args)) throw fail(`REDUCE with arguments that are a ${describe(args)}`);
        stack.push(call(fn, args));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop();
        const cls = pop();
        stack.push(call(cls, Array.isArray(args) ? args : [args]));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        pop(); // keyword arguments: no class the reader models takes any
        const args = pop();
        const cls = pop();
        stack.push(call(cls, Array.isArray(args) ? args : [args]));
        break;
      }
      case 0x69: { // INST "module\nname\n" with arguments since MARK
        const module = line();
        const name = line();
        const args = popMark();
        stack.push(call(makeGlobal(module, name), args));
        break;
      }
      case 0x6f: { // OBJ
        const items = popMark();
        stack.push(call(items[0], items.slice(1)));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyObject) obj.state = state;
        else if (obj instanceof Map) (obj as unknown as Record<symbol, unknown>)[PY_ATTRS] = state;
        else if (typeof obj === "object" && obj !== null && "setState" in obj) {
          (obj as { setState(s: unknown): void }).setState(state);
        }
        // Otherwise the state of a rebuilt value (a tensor's hooks) carries nothing the reader needs.
        break;
      }
      case 0x51: // BINPERSID
      case 0x50: { // PERSID (text)
        const pid = op === 0x51 ? pop() : line();
        if (!opts.persistentLoad) throw fail("a persistent id, but no persistent_load was given");
        stack.push(opts.persistentLoad(pid));
        break;
      }
      case 0x82: // EXT1
      case 0x83: // EXT2
      case 0x84: // EXT4
        throw fail("extension-registry codes are not supported");
      default:
        throw fail(`unknown opcode 0x${op.toString(16)}`);
    }
  }
}

/** Keys of Maps: Python hashes by value, so tuples become their string form. */
function hashable(k: unknown): unknown {
  return Array.isArray(k) ? JSON.stringify(k, (_, v) => (typeof v === "bigint" ? v.toString() : v)) : k;
}

/** A short description of a value for messages. */
export function describe(v: unknown): string {
  if (v === null) return "None";
  if (v instanceof PyCallable) return `global ${v.global.qualified}`;
  if (v instanceof PyObject) return `${v.cls.qualified} object`;
  if (v instanceof PyGlobal) return `global ${v.qualified}`;
  if (v instanceof Map) return "dict";
  if (Array.isArray(v)) return "list or tuple";
  if (v instanceof Uint8Array) return "bytes";
  return typeof v;
}

/** Python's `args` namespaces and similar objects as plain records (for printing checkpoint metadata). */
export function objectState(v: unknown): Record<string, unknown> | undefined {
  if (!(v instanceof PyObject)) return undefined;
  const s = v.state;
  if (s instanceof Map) return Object.fromEntries([...s].map(([k, x]) => [String(k), x]));
  return undefined;
}
