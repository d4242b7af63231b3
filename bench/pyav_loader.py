"""The PyTorch side of `deno task bench:loader --compare pyav`: a VideoMAE-style pretraining loader on
PyAV and torch's DataLoader, for the same clips as the VideoLoader: per video, a strided clip of
`frames` frames at `stride` (keyframe seek, then decoding forward to the last frame needed), `repeats`
multi-scale crops resized to `size` and normalised, batched by a DataLoader with `workers` processes.

Started by bench/loader_bench.ts with its settings as JSON in argv[1]; prints one JSON line:
{"rate": clips per second, "cpu": CPU milliseconds per clip (main process and workers)} over the timed
batches, after warm-up batches that start the workers and fill their prefetch.
"""

import json
import os
import random
import sys
import time

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)


def decode_clip(path, frames, stride, rng):
    """(T, H, W, 3) uint8: `frames` frames at `stride` from a random start, as VideoMAE samples them."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        total = stream.frames or int(float(stream.duration * stream.time_base) * float(stream.average_rate))
        span = (frames - 1) * stride + 1
        start = rng.randint(0, max(0, total - span))
        wanted = [min(start + i * stride, total - 1) for i in range(frames)]
        fps = float(stream.average_rate)
        container.seek(int(wanted[0] / fps / stream.time_base), stream=stream, backward=True)
        out = {}
        last = wanted[-1]
        for frame in container.decode(stream):
            idx = int(round(float(frame.pts * stream.time_base) * fps))
            if idx in wanted and idx not in out:
                out[idx] = frame.to_ndarray(format="rgb24")
            if idx >= last:
                break
        got = [out[i] if i in out else out[max(out)] for i in wanted]
        return np.stack(got)


def multi_scale_crop(video, size, rng):
    """(3, T, size, size) f32: VideoMAE's multi-scale crop (scales 1, .875, .75, .66), then normalise."""
    t, h, w, _ = video.shape
    base = min(h, w)
    cw = int(base * rng.choice([1, 0.875, 0.75, 0.66]))
    ch = int(base * rng.choice([1, 0.875, 0.75, 0.66]))
    x = rng.randint(0, w - cw)
    y = rng.randint(0, h - ch)
    clip = torch.from_numpy(video[:, y : y + ch, x : x + cw]).permute(0, 3, 1, 2).float()
    clip = F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False)
    return (clip.permute(1, 0, 2, 3) / 255.0 - MEAN) / STD


class Clips(Dataset):
    def __init__(self, c):
        self.c = c

    def __len__(self):
        return 1 << 30

    def __getitem__(self, i):
        c = self.c
        rng = random.Random(i)
        video = decode_clip(c["files"][i % len(c["files"])], c["frames"], c["stride"], rng)
        return torch.stack([multi_scale_crop(video, c["size"], rng) for _ in range(c["repeats"])])


def cpu_ms(pids):
    """User + system CPU milliseconds of the given processes (Linux /proc)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")
    return total


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    videos_per_batch = c["batch"]
    loader = DataLoader(Clips(c), batch_size=videos_per_batch, num_workers=c["workers"], prefetch_factor=2,
                        persistent_workers=True)
    it = iter(loader)
    for _ in range(3):
        next(it)
    pids = [os.getpid()] + [w.pid for w in it._workers]
    steps = max(2, round(c["videos"] / videos_per_batch))
    c0 = cpu_ms(pids)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    secs = time.perf_counter() - t0
    clips = steps * videos_per_batch * c["repeats"]
    print(json.dumps({"rate": clips / secs, "cpu": (cpu_ms(pids) - c0) / clips}), flush=True)
    del it


if __name__ == "__main__":
    main()
