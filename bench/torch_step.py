"""The PyTorch side of `deno task bench:step --compare torch`: the same VideoMAE pretraining step
(tube-masked encoder, decoder over all tokens, MSE to per-patch normalised pixels, AdamW) written the
way the VideoMAE reference code writes it, timed on request.

Started by bench/step.ts with the model as JSON in argv[1]. It answers on stdout, one line per
request read from stdin: "ready" once warmed up, then for "run K" the seconds K steps took, and it
exits on "quit" or end of input. Not a test of numerics: only the amount and kind of work matter.
"""

import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias, requires_grad=False), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def sinusoid(tokens, dim):
    pos = torch.arange(tokens, dtype=torch.float64)[:, None]
    j = torch.arange(dim)[None, :]
    angle = pos / torch.pow(10000.0, 2 * (j // 2) / dim)
    table = torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()[None]


class Pretrain(nn.Module):
    def __init__(self, c):
        super().__init__()
        p, tub = c["patchSize"], c["tubelet"]
        self.c = c
        self.per_slice = (c["imgSize"] // p) ** 2
        self.tokens = (c["frames"] // tub) * self.per_slice
        self.patch_embed = nn.Conv3d(3, c["embedDim"], (tub, p, p), (tub, p, p))
        self.register_buffer("enc_pos", sinusoid(self.tokens, c["embedDim"]))
        self.register_buffer("dec_pos", sinusoid(self.tokens, c["decoderDim"]))
        hid = int(c["embedDim"] * c["mlpRatio"])
        dhid = int(c["decoderDim"] * c["mlpRatio"])
        self.blocks = nn.ModuleList(
            Block(c["embedDim"], c["heads"], hid, c["lnEps"]) for _ in range(c["depth"]))
        self.norm = nn.LayerNorm(c["embedDim"], eps=c["lnEps"])
        self.encoder_to_decoder = nn.Linear(c["embedDim"], c["decoderDim"], bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c["decoderDim"]))
        self.decoder_blocks = nn.ModuleList(
            Block(c["decoderDim"], c["decoderHeads"], dhid, c["lnEps"]) for _ in range(c["decoderDepth"]))
        self.decoder_norm = nn.LayerNorm(c["decoderDim"], eps=c["lnEps"])
        self.head = nn.Linear(c["decoderDim"], 3 * tub * p * p)

    def tube_mask(self, b):
        """(B, tokens) bool, True where masked: the same spatial positions in every time slice."""
        nm = int(self.c["maskRatio"] * self.per_slice)
        keys = torch.rand(b, self.per_slice)
        spatial = torch.zeros(b, self.per_slice, dtype=torch.bool)
        spatial.scatter_(1, keys.argsort(dim=1)[:, :nm], True)
        return spatial.repeat(1, self.tokens // self.per_slice)

    def target(self, video):
        b = video.shape[0]
        p, tub = self.c["patchSize"], self.c["tubelet"]
        t, h, w = video.shape[2] // tub, video.shape[3] // p, video.shape[4] // p
        x = video.reshape(b, 3, t, tub, h, p, w, p).permute(0, 2, 4, 6, 3, 5, 7, 1)
        x = x.reshape(b, t * h * w, tub * p * p, 3)
        x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
        return x.reshape(b, t * h * w, -1)

    def forward(self, video, mask):
        b = video.shape[0]
        x = self.patch_embed(video).flatten(2).transpose(1, 2) + self.enc_pos
        c = x.shape[-1]
        x = x[~mask].reshape(b, -1, c)
        for blk in self.blocks:
            x = blk(x)
        x = self.encoder_to_decoder(self.norm(x))
        pos = self.dec_pos.expand(b, -1, -1)
        dc = pos.shape[-1]
        vis = x + pos[~mask].reshape(b, -1, dc)
        msk = self.mask_token + pos[mask].reshape(b, -1, dc)
        x = torch.cat([vis, msk], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        nm = msk.shape[1]
        pred = self.head(self.decoder_norm(x[:, -nm:]))
        with torch.no_grad():
            target = self.target(video)[mask].reshape(b, nm, -1)
        return F.mse_loss(pred, target)


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c["threads"])
    torch.manual_seed(0)
    model = Pretrain(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    video = torch.randn(c["batch"], 3, c["frames"], c["imgSize"], c["imgSize"])

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(video, model.tube_mask(c["batch"]))
        loss.backward()
        opt.step()
        return loss

    for _ in range(2):
        step()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        k = int(words[1])
        t0 = time.perf_counter()
        for _ in range(k):
            loss = step()
        print(f"{time.perf_counter() - t0:.6f} {loss.item():.6f}", flush=True)


if __name__ == "__main__":
    main()
