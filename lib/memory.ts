/**
 * Device memory: a per-step arena for activations and persistent allocations for parameters, gradients
 * and optimiser state. A training step allocates from the arena only; after the first step the arena is
 * one block large enough for a whole step, so steady-state steps never reach the system allocator.
 */
import { deviceAlloc, deviceFree, type Pointer, ptrOffset } from "./ffi/pointers.ts";
import { type DType, DTYPE_BYTES, numelOf, Tensor } from "./tensor.ts";

const ALIGN = 256;
const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

const persistentStats = { inUse: 0, peak: 0 };
// Every arena's device memory, so that a notebook (or a test) can see a run give back all it took.
const arenaStats = { held: 0, arenas: 0 };
const live = new Map<Pointer, number>();

/** Allocates a persistent tensor (parameters, gradients, optimiser state, tables). */
export function allocPersistent(shape: readonly number[], dtype: DType): Tensor {
  const bytes = alignUp(Math.max(1, numelOf(shape) * DTYPE_BYTES[dtype]));
  const ptr = deviceAlloc(bytes);
  live.set(ptr, bytes);
  persistentStats.inUse += bytes;
  persistentStats.peak = Math.max(persistentStats.peak, persistentStats.inUse);
  return new Tensor(shape, dtype, ptr);
}

/** Frees a tensor returned by allocPersistent. */
export function freePersistent(t: Tensor): void {
  const bytes = live.get(t.ptr);
  if (bytes === undefined) throw new Error(`${t} was not allocated by allocPersistent or is already freed`);
  live.delete(t.ptr);
  persistentStats.inUse -= bytes;
  deviceFree(t.ptr);
}

interface Chunk {
  ptr: Pointer;
  bytes: number;
}

/** A bump allocator for one step's activations; reset() frees everything at once. */
export class Arena {
  private chunks: Chunk[] = [];
  private offset = 0;
  private usedInFullChunks = 0;
  private stepPeak = 0;
  /** The largest number of bytes live at once over the arena's life. */
  peak = 0;

  constructor(private initialBytes = 64 << 20) {}

  /** Bytes handed out since the last reset. */
  get inUse(): number {
    return this.usedInFullChunks + this.offset;
  }

  /** Bytes held from the device. */
  get capacity(): number {
    return this.chunks.reduce((s, c) => s + c.bytes, 0);
  }

  alloc(shape: readonly number[], dtype: DType): Tensor {
    const bytes = alignUp(Math.max(1, numelOf(shape) * DTYPE_BYTES[dtype]));
    let chunk = this.chunks[this.chunks.length - 1];
    if (!chunk || this.offset + bytes > chunk.bytes) {
      // Only the first steps grow the arena; reset() then merges the chunks into one.
      if (chunk) this.usedInFullChunks += this.offset;
      chunk = this.addChunk(Math.max(bytes, this.initialBytes, chunk ? chunk.bytes * 2 : 0));
      this.offset = 0;
    }
    const t = new Tensor(shape, dtype, ptrOffset(chunk.ptr, this.offset));
    this.offset += bytes;
    this.stepPeak = Math.max(this.stepPeak, this.inUse);
    this.peak = Math.max(this.peak, this.stepPeak);
    return t;
  }

  /** Forgets every tensor handed out; they must not be used afterwards. */
  reset(): void {
    if (this.chunks.length > 1) {
      const total = alignUp(Math.ceil(this.stepPeak * 1.05));
      this.release();
      this.addChunk(total);
    }
    this.offset = 0;
    this.usedInFullChunks = 0;
    this.stepPeak = 0;
  }

  /** Returns the arena's memory to the device. */
  dispose(): void {
    this.release();
    this.offset = 0;
    this.usedInFullChunks = 0;
  }

  /** Takes `bytes` from the device as a new chunk; an arena with chunks counts once in arenaStats. */
  private addChunk(bytes: number): Chunk {
    const chunk = { ptr: deviceAlloc(bytes), bytes };
    if (this.chunks.length === 0) arenaStats.arenas++;
    arenaStats.held += bytes;
    this.chunks.push(chunk);
    return chunk;
  }

  private release(): void {
    if (this.chunks.length === 0) return;
    for (const c of this.chunks) {
      deviceFree(c.ptr);
      arenaStats.held -= c.bytes;
    }
    arenaStats.arenas--;
    this.chunks = [];
  }
}

/** Bytes in use and peak of the persistent allocations. */
export function persistentMemory(): { inUse: number; peak: number } {
  return { ...persistentStats };
}

/**
 * Device memory held now: persistent tensors (parameters, gradients, optimiser state, tables) and the
 * arenas not yet disposed (`arenas` counts them). After a training run ends, or is stopped, both are
 * back where they were before it started.
 */
export function memoryInUse(): { persistent: number; arenas: number; arenaBytes: number; total: number } {
  return {
    persistent: persistentStats.inUse,
    arenas: arenaStats.arenas,
    arenaBytes: arenaStats.held,
    total: persistentStats.inUse + arenaStats.held,
  };
}
