/**
 * Layer-wise learning-rate decay for fine-tuning (spec §1.5): parameters are grouped by depth, the
 * patch embedding at layer 0, block k at layer k + 1, everything after the blocks (fc_norm, head) at
 * depth + 1, and layer i's learning rate is scaled by decay^(depth + 1 - i). Weight decay follows
 * V-SWIFT's exclusion rule (vswiftDecays).
 */
import type { Param } from "../../model/params.ts";
import { type GroupRule, vswiftDecays } from "../adamw.ts";

/** The layer of a parameter name in a model of `depth` blocks (timm's get_layer_id_for_vit). */
export function layerId(name: string, depth: number): number {
  if (name === "cls_token" || name === "mask_token" || name === "pos_embed") return 0;
  if (name.startsWith("patch_embed")) return 0;
  if (name.startsWith("rel_pos_bias")) return depth + 1;
  if (name.startsWith("blocks.")) {
    const k = Number(name.split(".")[1]);
    if (!Number.isInteger(k) || k < 0 || k >= depth) {
      throw new RangeError(`Parameter ${name} names block ${name.split(".")[1]} of a ${depth}-block model`);
    }
    return k + 1;
  }
  return depth + 1;
}

/** Scale of each layer 0 .. depth + 1: decay^(depth + 1 - i); all 1 when decay is 1 (or more). */
export function layerScales(depth: number, decay: number): number[] {
  if (!(decay > 0)) throw new RangeError(`Layer decay must be positive, got ${decay}`);
  return Array.from({ length: depth + 2 }, (_, i) => (decay < 1 ? decay ** (depth + 1 - i) : 1));
}

/** AdamW's rule for fine-tuning: lr scale by layer, weight decay by V-SWIFT's exclusion rule. */
export function layerDecayRule(depth: number, decay: number, weightDecay: number): GroupRule {
  const scales = layerScales(depth, decay);
  return (p: Param) => ({
    lrScale: scales[layerId(p.name, depth)],
    weightDecay: vswiftDecays(p) ? weightDecay : 0,
  });
}

/** One parameter group as V-SWIFT names them (layer_{id}_{decay|no_decay}). */
export interface ParamGroup {
  name: string;
  layer: number;
  lrScale: number;
  weightDecay: number;
  params: string[];
}

/** The parameter groups of a model's parameters, in order of first appearance. */
export function paramGroups(
  params: readonly Param[],
  depth: number,
  decay: number,
  weightDecay: number,
): ParamGroup[] {
  const rule = layerDecayRule(depth, decay, weightDecay);
  const groups = new Map<string, ParamGroup>();
  for (const p of params) {
    const layer = layerId(p.name, depth);
    const h = rule(p);
    const name = `layer_${layer}_${h.weightDecay > 0 ? "decay" : "no_decay"}`;
    let g = groups.get(name);
    if (!g) {
      g = { name, layer, lrScale: h.lrScale, weightDecay: h.weightDecay, params: [] };
      groups.set(name, g);
    }
    g.params.push(p.name);
  }
  return [...groups.values()];
}
