/** The arena: per-step reuse, growth only in the first steps, peak and in-use reporting. */
import assert from "node:assert/strict";
import { allocPersistent, Arena, freePersistent, persistentMemory } from "../lib/memory.ts";
import { ptrAddress } from "../lib/ffi/pointers.ts";
import "./helpers.ts";

Deno.test("an arena reuses its memory every step and merges its growth into one block", () => {
  const arena = new Arena(4096);
  const a = arena.alloc([100], "f32");
  const b = arena.alloc([1], "bf16");
  assert.equal(ptrAddress(b.ptr) - ptrAddress(a.ptr), 512); // 400 bytes rounded to 256-byte alignment
  assert.equal(ptrAddress(a.ptr) % 256, 0);
  arena.alloc([4000], "f32"); // does not fit: a second chunk
  assert.equal(arena.inUse, 512 + 256 + 16128);
  const peak = arena.peak;
  arena.reset();
  assert.equal(arena.inUse, 0);
  const before = arena.capacity;
  assert.ok(before >= peak, `merged block ${before} holds the step's ${peak} bytes`);
  // The same step again fits in the merged block: nothing new is allocated.
  arena.alloc([100], "f32");
  arena.alloc([1], "bf16");
  arena.alloc([4000], "f32");
  assert.equal(arena.capacity, before);
  arena.dispose();
});

Deno.test("persistent allocations are counted in use and at peak", () => {
  const start = persistentMemory();
  const t = allocPersistent([1 << 20], "f32");
  assert.equal(persistentMemory().inUse - start.inUse, 4 << 20);
  freePersistent(t);
  assert.equal(persistentMemory().inUse, start.inUse);
  assert.ok(persistentMemory().peak >= start.inUse + (4 << 20));
  assert.throws(() => freePersistent(t), /already freed/);
});
