"""Reading what the harness writes: safetensors (without the safetensors package), ovbench's
exported weights, the batch and the per-step kept-patch indices."""
import json
import os
import struct

import torch

from .model import linear_weights, rust_name

_DT = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "U32": torch.uint32,
       "BF16": torch.bfloat16, "F16": torch.float16, "U8": torch.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        buf = bytearray(os.path.getsize(path) - 8 - n)
        f.readinto(buf)
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        dt = _DT[h["dtype"]]
        t = torch.frombuffer(buf, dtype=dt, count=(b - a) // dt.itemsize, offset=a) if b > a else torch.empty(0, dtype=dt)
        out[name] = t.reshape(h["shape"])
    return out


class LoadError(Exception):
    pass


def load_weights(model, path):
    """Copies ovbench's exported weights (params.safetensors, candle's layout) into `model`."""
    weights = read_safetensors(path)
    lin = linear_weights(model)
    ours = dict(model.named_parameters())
    names = {rust_name(n): n for n in ours}
    missing = sorted(set(weights) - set(names))
    extra = sorted(set(names) - set(weights))
    if missing or extra:
        raise LoadError(f"{path}: parameter names differ: only in ovbench {missing[:5]}, only in torch {extra[:5]}")
    with torch.no_grad():
        for rn, tn in names.items():
            w = weights[rn].t() if tn in lin else weights[rn]
            if tuple(w.shape) != tuple(ours[tn].shape):
                raise LoadError(f"{rn}: ovbench shape {tuple(weights[rn].shape)}, torch {tuple(ours[tn].shape)}")
            ours[tn].copy_(w)


def load_inputs(path):
    """(batch, keep) from batch.safetensors: the batch tensors and `keep_step<k>` by step k."""
    raw = read_safetensors(path)
    batch = {k: v.clone() for k, v in raw.items() if not k.startswith("keep_step")}
    keep = {int(k[len("keep_step"):]): v.clone() for k, v in raw.items() if k.startswith("keep_step")}
    return batch, keep
