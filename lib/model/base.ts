/** What the pretraining and the fine-tuning models share: parameters, position tables, dtype. */
import { allocPersistent, freePersistent } from "../memory.ts";
import { sinusoidTable } from "../ops/video.ts";
import { Rng } from "../rng.ts";
import { type DType, readFloats, type Tensor } from "../tensor.ts";
import type { ModelConfig } from "./config.ts";
import { ParamStore } from "./params.ts";

/** A fixed sinusoid position table, registered by V-SWIFT as a state-dict buffer (1, N, dim). */
export interface PositionTable {
  name: string;
  tokens: number;
  dim: number;
  /** (N, dim) in the compute dtype once allocated. */
  value?: Tensor;
}

export abstract class VideoModel {
  readonly store = new ParamStore();
  protected readonly tables: PositionTable[] = [];

  constructor(readonly config: ModelConfig) {}

  /** The compute dtype, once allocated. */
  get dtype(): DType | undefined {
    return this.store.dtype;
  }

  /** Number of parameters (the count PyTorch's model.parameters() gives). */
  get parameterCount(): number {
    return this.store.count;
  }

  protected table(name: string, tokens: number, dim: number): PositionTable {
    const t: PositionTable = { name, tokens, dim };
    this.tables.push(t);
    return t;
  }

  /** Allocates parameters and position tables on the open device in the compute dtype. */
  allocate(dtype: DType = "f32"): this {
    this.store.allocate(dtype);
    for (const t of this.tables) {
      t.value = allocPersistent([t.tokens, t.dim], dtype);
      sinusoidTable(t.value, t.tokens, t.dim);
    }
    return this;
  }

  /** Draws V-SWIFT's initialisation from a seed (or an Rng). */
  initialize(seed: number | Rng = 0): this {
    this.store.initialize(typeof seed === "number" ? new Rng(seed) : seed);
    return this;
  }

  /** The position buffers as f32 host values with their state-dict names and shapes (1, N, dim). */
  buffers(): { name: string; shape: number[]; values: Float32Array }[] {
    return this.tables.map((t) => {
      const tmp = allocPersistent([t.tokens, t.dim], "f32");
      try {
        sinusoidTable(tmp, t.tokens, t.dim);
        return { name: t.name, shape: [1, t.tokens, t.dim], values: readFloats(tmp) };
      } finally {
        freePersistent(tmp);
      }
    });
  }

  /** Returns the model's device memory. */
  free(): void {
    this.store.free();
    for (const t of this.tables) {
      if (t.value) freePersistent(t.value);
      t.value = undefined;
    }
  }

  protected requireTable(t: PositionTable): Tensor {
    if (!t.value) throw new Error("The model is not allocated yet: call allocate() before forward()");
    return t.value;
  }
}
