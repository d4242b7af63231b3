"""The PyTorch side of `deno task bench:twin`: repeats a recorded vswift run in PyTorch.

Usage: /usr/bin/python3 bench/torch_twin/twin.py DIR [--dtype float64|float32]

DIR holds what bench/torch_twin/twin.ts wrote: init.safetensors (the initial state dict, V-SWIFT's names),
steps.safetensors (every step's clips, soft targets or tube masks) and run.json (model geometry, learning
rate per step, each parameter's lr scale and weight decay, AdamW's betas and eps). The models are written
here with plain torch operations from VSWIFT_SPEC.md (Conv3d patch embedding, sinusoid positions, pre-norm
blocks with q/v biases, exact-erf GELU, max or mean pooling, fc_norm and head; the MAE decoder on
[visible, mask tokens] and the per-token normalised pixel target), independently of vswift's kernels, and
trained with torch.optim.AdamW. Writes DIR/torch_losses.json (the loss of every step).
"""
import argparse
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "BF16": torch.bfloat16}


def read_safetensors(path):
    """Name -> tensor of a safetensors file (8-byte little-endian header length, JSON header, raw data)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=DTYPES[info["dtype"]]) if b > a else torch.zeros(0)
        out[name] = t.reshape(info["shape"])
    return out


def sinusoid(n, d, dtype):
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(d)
    angle = pos / torch.pow(10000.0, (2 * (j // 2)).double() / d)[None, :]
    return torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle)).to(dtype)


def block(x, p, prefix, heads, eps):
    """Pre-norm block: x + attn(LN1 x), then + mlp(LN2 .). x: (B, n, dim)."""
    b, n, dim = x.shape
    hd = dim // heads
    h = F.layer_norm(x, (dim,), p[f"{prefix}.norm1.weight"], p[f"{prefix}.norm1.bias"], eps)
    q_bias = p[f"{prefix}.attn.q_bias"]
    bias = torch.cat([q_bias, torch.zeros_like(q_bias), p[f"{prefix}.attn.v_bias"]])
    qkv = F.linear(h, p[f"{prefix}.attn.qkv.weight"], bias).reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    att = torch.softmax((q @ k.transpose(-2, -1)) * hd**-0.5, dim=-1)
    a = (att @ v).transpose(1, 2).reshape(b, n, dim)
    x = x + F.linear(a, p[f"{prefix}.attn.proj.weight"], p[f"{prefix}.attn.proj.bias"])
    h = F.layer_norm(x, (dim,), p[f"{prefix}.norm2.weight"], p[f"{prefix}.norm2.bias"], eps)
    h = F.gelu(F.linear(h, p[f"{prefix}.mlp.fc1.weight"], p[f"{prefix}.mlp.fc1.bias"]))
    return x + F.linear(h, p[f"{prefix}.mlp.fc2.weight"], p[f"{prefix}.mlp.fc2.bias"])


def patch_embed(video, p, prefix, tub, patch):
    """Conv3d with kernel = stride = (tubelet, p, p), tokens in (t, y, x) raster order: (B, N, D)."""
    w, b = p[f"{prefix}.proj.weight"], p[f"{prefix}.proj.bias"]
    return F.conv3d(video, w, b, stride=(tub, patch, patch)).flatten(2).transpose(1, 2)


def classifier_loss(p, m, video, targets):
    eps, depth = m["lnEps"], m["depth"]
    x = patch_embed(video, p, "patch_embed", m["tubelet"], m["patchSize"])
    x = x + sinusoid(x.shape[1], x.shape[2], x.dtype)
    for i in range(depth):
        x = block(x, p, f"blocks.{i}", m["heads"], eps)
    pooled = x.max(dim=1).values if m["pool"] == "max" else x.mean(dim=1)
    x = F.layer_norm(pooled, (x.shape[2],), p["fc_norm.weight"], p["fc_norm.bias"], eps)
    logits = F.linear(x, p["head.weight"], p["head.bias"])
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def pixel_target(video, tub, patch):
    """Per token and channel, (v - mean) / (unbiased std + 1e-6), values in (tub, y, x, channel) order."""
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // tub, tub, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, -1, tub * patch * patch, c)
    x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return x.reshape(b, x.shape[1], -1)


def gather(x, idx):
    """x: (B, n, C), idx: (B, k) -> (B, k, C)."""
    return torch.gather(x, 1, idx.long()[:, :, None].expand(-1, -1, x.shape[2]))


def pretrain_loss(p, m, video, visible, masked):
    eps, tub, patch = m["lnEps"], m["tubelet"], m["patchSize"]
    x = patch_embed(video, p, "encoder.patch_embed", tub, patch)
    n, d = x.shape[1], x.shape[2]
    x = gather(x + sinusoid(n, d, x.dtype), visible)
    for i in range(m["depth"]):
        x = block(x, p, f"encoder.blocks.{i}", m["heads"], eps)
    x = F.layer_norm(x, (d,), p["encoder.norm.weight"], p["encoder.norm.bias"], eps)
    x = F.linear(x, p["encoder_to_decoder.weight"], p.get("encoder_to_decoder.bias"))
    dd = x.shape[2]
    dec_pos = sinusoid(n, dd, x.dtype)[None].expand(video.shape[0], -1, -1)
    xm = p["decoder.mask_token"] + gather(dec_pos, masked)
    x = torch.cat([x + gather(dec_pos, visible), xm], dim=1)
    for i in range(m["decoderDepth"]):
        x = block(x, p, f"decoder.blocks.{i}", m["decoderHeads"], eps)
    x = x[:, visible.shape[1] :]
    x = F.layer_norm(x, (dd,), p["decoder.norm.weight"], p["decoder.norm.bias"], eps)
    pred = F.linear(x, p["decoder.head.weight"], p["decoder.head.bias"])
    target = gather(pixel_target(video, tub, patch), masked)
    return ((pred - target) ** 2).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    a = ap.parse_args()
    dtype = getattr(torch, a.dtype)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    run = json.load(open(os.path.join(a.dir, "run.json")))
    init = read_safetensors(os.path.join(a.dir, "init.safetensors"))
    steps = read_safetensors(os.path.join(a.dir, "steps.safetensors"))
    params = {k: v.to(dtype).clone().requires_grad_(True) for k, v in init.items()}
    groups = [
        {
            "params": [params[name]],
            "lr_scale": g["lr_scale"],
            "weight_decay": g["weight_decay"],
        }
        for name, g in run["groups"].items()
    ]
    missing = set(params) - set(run["groups"])
    if missing:
        raise SystemExit(f"run.json has no optimizer group for {sorted(missing)}")
    opt = torch.optim.AdamW(groups, lr=run["lrs"][0], betas=tuple(run["betas"]), eps=run["eps"])
    m = run["model"]
    losses = []
    for s in range(run["steps"]):
        video = steps[f"video.{s}"].to(dtype)
        if run["kind"] == "classifier":
            loss = classifier_loss(params, m, video, steps[f"targets.{s}"].to(dtype))
        else:
            loss = pretrain_loss(params, m, video, steps[f"visible.{s}"], steps[f"masked.{s}"])
        opt.zero_grad()
        loss.backward()
        if run.get("clip_grad", 0) > 0:
            torch.nn.utils.clip_grad_norm_(list(params.values()), run["clip_grad"])
        for g in opt.param_groups:
            g["lr"] = run["lrs"][s] * g["lr_scale"]
        opt.step()
        losses.append(float(loss))
        if not math.isfinite(losses[-1]):
            raise SystemExit(f"PyTorch's loss is {losses[-1]} at step {s}")
    with open(os.path.join(a.dir, "torch_losses.json.tmp"), "w") as f:
        json.dump(losses, f)
    os.replace(os.path.join(a.dir, "torch_losses.json.tmp"), os.path.join(a.dir, "torch_losses.json"))
    print(f"twin.py: {run['kind']}, {run['steps']} steps in torch {torch.__version__} ({a.dtype})")


if __name__ == "__main__":
    main()
