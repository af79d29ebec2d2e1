#!/usr/bin/env python3
"""The same training step as `ovbench step` (suites/train), in PyTorch, for a side-by-side timing.

Architecture and shapes are read from an ovbench step record (`model_config`), so both sides
build the same model: pre-LN ViT (patch embedding as a Linear, sin-cos position embedding,
CLS token), composed layer norm (eps 1e-6), softmax attention with additive masks, GELU MLPs;
OpenVision 2 = ViT + v2 decoder on the kept patch tokens (index select) + caption loss x2;
OpenVision = ViT + text encoder (alt text and sentence) + v1 decoder with 128 queries +
InfoNCE (x1) + caption loss (x2). AdamW b1 .9, b2 .95, wd .2, eps 1e-8, lr 1.024e-3, f32
master weights; bf16 runs use autocast for the matrix products, as candle's side casts them.
Time per step: CUDA events around forward, backward and optimizer; warm-up excluded.

usage: torch_step.py --record REC.json --recipe ov1|ov2 --dtype f32|bf16 [--warmup 2 --steps 5]
       torch_step.py --selftest   (a tiny CPU run, to check the script)
"""
import argparse, json, math, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, TEXT_LEN, CAPTION_LEN, V1_QUERIES, LN_EPS = 32000, 80, 128, 128, 1e-6


class LN(nn.Module):
    def __init__(s, d):
        super().__init__()
        s.g, s.b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(s, x):
        return F.layer_norm(x.float(), (x.shape[-1],), s.g, s.b, LN_EPS)


class Lin(nn.Linear):
    def __init__(s, i, o, bias=True, std=0.02):
        super().__init__(i, o, bias)
        nn.init.normal_(s.weight, std=std)
        if bias:
            nn.init.zeros_(s.bias)


class Block(nn.Module):
    def __init__(s, d):
        super().__init__()
        w, s.h = d["width"], d["heads"]
        s.ln1, s.ln2 = LN(w), LN(w)
        s.qkv, s.out = Lin(w, 3 * w), Lin(w, w)
        s.fc1, s.fc2 = Lin(w, d["mlp_dim"]), Lin(d["mlp_dim"], w)

    def forward(s, x, mask=None):
        b, t, w = x.shape
        q, k, v = s.qkv(s.ln1(x)).view(b, t, 3, s.h, w // s.h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype))
        x = x + s.out(y.transpose(1, 2).reshape(b, t, w)).float()
        return x + s.fc2(F.gelu(s.fc1(s.ln2(x)), approximate="tanh")).float()


class Stack(nn.Module):
    def __init__(s, d):
        super().__init__()
        s.blocks = nn.ModuleList(Block(d) for _ in range(d["depth"]))

    def forward(s, x, mask=None):
        for b in s.blocks:
            x = b(x, mask)
        return x


def sincos_2d(h, w, width):
    q = width // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / max(q - 1, 1))
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    y, x = y.flatten()[:, None] * omega, x.flatten()[:, None] * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], 1).float()


class ViT(nn.Module):
    def __init__(s, d, patch, res):
        super().__init__()
        s.p, w = patch, d["width"]
        s.embed = Lin(patch * patch * 3, w, std=(1 / (patch * patch * 3)) ** 0.5)
        s.cls = nn.Parameter(torch.zeros(1, 1, w))
        s.register_buffer("pos", sincos_2d(res // patch, res // patch, w))
        s.blocks, s.norm = Stack(d), LN(w)

    def forward(s, img):
        b, c, h, w = img.shape
        p = s.p
        x = img.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
        x = s.embed(x).float() + s.pos
        x = s.blocks(torch.cat([s.cls.expand(b, -1, -1), x], 1))
        return x[:, 1:]


class TextEncoder(nn.Module):
    def __init__(s, d, img_w):
        super().__init__()
        s.embed = nn.Parameter(torch.randn(VOCAB, d["width"]) * 0.02)
        s.pos = nn.Parameter(torch.randn(TEXT_LEN, d["width"]) * 0.01)
        s.blocks, s.norm, s.proj = Stack(d), LN(d["width"]), Lin(d["width"], img_w, bias=False)

    def forward(s, ids):
        x = s.norm(s.blocks(s.embed[ids] + s.pos[: ids.shape[1]]))
        return s.proj(x[:, -1]).float(), x


def causal(t, dev, allowed):
    i, j = torch.arange(t, device=dev)[:, None], torch.arange(t, device=dev)[None]
    return torch.where(allowed(i, j), 0.0, -1e9)


class DecoderV1(nn.Module):
    def __init__(s, d, img_w, txt_w):
        super().__init__()
        s.img, s.txt = Lin(img_w, d["width"]), Lin(txt_w, d["width"])
        s.q = nn.Parameter(torch.randn(V1_QUERIES, d["width"]) * 0.02)
        s.blocks, s.norm, s.head = Stack(d), LN(d["width"]), Lin(d["width"], VOCAB, bias=False)

    def forward(s, img, alt):
        b = img.shape[0]
        x = torch.cat([s.img(img).float(), s.txt(alt).float(), s.q.expand(b, -1, -1)], 1)
        pre = x.shape[1] - V1_QUERIES
        m = causal(x.shape[1], x.device, lambda i, j: (j < pre) | ((i >= pre) & (j <= i)))
        return s.head(s.norm(s.blocks(x, m)[:, pre:])).float()


class DecoderV2(nn.Module):
    def __init__(s, d, img_w, prefix):
        super().__init__()
        s.img = Lin(img_w, d["width"], bias=False)
        s.embed = nn.Parameter(torch.randn(VOCAB, d["width"]) * 0.02)
        s.blocks, s.norm, s.head = Stack(d), LN(d["width"]), Lin(d["width"], VOCAB, bias=False)
        s.prefix = prefix

    def forward(s, kept, text_in):
        k = kept.shape[1]
        x = torch.cat([s.img(kept).float(), s.embed[text_in]], 1)
        if s.prefix:
            m = causal(x.shape[1], x.device, lambda i, j: (j < k) | (j <= i))
        else:
            m = causal(x.shape[1], x.device, lambda i, j: j <= i)
        return s.head(s.norm(s.blocks(x, m)[:, k:])).float()


def xent(logits, targets, weights):
    logp = F.log_softmax(logits.reshape(-1, logits.shape[-1]), -1)
    picked = logp.gather(1, targets.reshape(-1, 1)).reshape(targets.shape)
    return -(picked * weights).sum() / weights.sum()


def info_nce(a, b, log_t):
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() * log_t.exp()
    lab = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab))


class Model(nn.Module):
    def __init__(s, mc, recipe):
        super().__init__()
        v = mc["vision"]
        m = mc["model"]
        patch = m["patch"] if isinstance(m, dict) else int(str(m).split("/")[-1])
        n = (mc["resolution"] // patch) ** 2
        s.recipe = recipe
        s.keep = mc.get("kept_tokens") or int(math.floor(n * mc["keep_ratio"] + 1e-9))
        s.vit = ViT(v, patch, mc["resolution"])
        if recipe == "ov1":
            td = mc["text_encoder"]["dims"]
            s.text = TextEncoder(td, v["width"])
            s.dec = DecoderV1(mc["v1_decoder"]["dims"], v["width"], td["width"])
            s.log_t = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        else:
            s.dec = DecoderV2(mc["v2_decoder"]["dims"], v["width"], mc.get("v2_attention") == "prefix")

    def forward(s, batch):
        patches = s.vit(batch["images"])
        if s.recipe == "ov2":
            b, n, d = patches.shape
            idx = torch.rand(b, n, device=patches.device).argsort(1)[:, : s.keep]
            kept = patches.gather(1, idx[..., None].expand(-1, -1, d))
            return 2.0 * xent(s.dec(kept, batch["v2_input"]), batch["v2_targets"], batch["v2_weights"])
        pooled = s.vit.norm(patches.mean(1))
        a, alt_tok = s.text(batch["alt"])
        se, _ = s.text(batch["sent"])
        con = 0.5 * (info_nce(pooled, a, s.log_t) + info_nce(pooled, se, s.log_t))
        cap = xent(s.dec(patches, alt_tok[:, :-1]), batch["v1_targets"], batch["v1_weights"])
        return con + 2.0 * cap


def make_batch(b, res, dev, g):
    def ids(n, length):
        t = torch.randint(4, VOCAB, (b, n), generator=g)
        lens = torch.randint(length // 2, length + 1, (b, 1), generator=g)
        w = (torch.arange(n)[None] < lens).float()
        return t, w
    cap, cw = ids(CAPTION_LEN, 70)
    alt, _ = ids(TEXT_LEN, 12)
    sent, _ = ids(TEXT_LEN, 18)
    out = {
        "images": torch.randn(b, 3, res, res, generator=g),
        "alt": alt, "sent": sent,
        "v2_input": cap[:, :-1], "v2_targets": cap[:, 1:], "v2_weights": cw[:, 1:],
        "v1_targets": torch.cat([cap[:, 1:], torch.zeros(b, 1, dtype=cap.dtype)], 1),
        "v1_weights": torch.cat([cw[:, 1:], torch.zeros(b, 1)], 1),
    }
    return {k: v.to(dev) for k, v in out.items()}


def find_model_config(obj):
    if isinstance(obj, dict):
        if "model_config" in obj:
            return obj["model_config"], obj.get("config", {})
        for v in obj.values():
            r = find_model_config(v)
            if r:
                return r
    return None


def run(mc, recipe, batch, dtype, warmup, steps, dev):
    torch.manual_seed(0)
    model = Model(mc, recipe).to(dev)
    if recipe == "ov2":
        model.vit.norm.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1.024e-3,
                            betas=(0.9, 0.95), eps=1e-8, weight_decay=0.2,
                            foreach=True)
    g = torch.Generator().manual_seed(0)
    data = make_batch(batch, mc["resolution"], dev, g)
    cuda = dev.type == "cuda"
    ac = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    samples, losses = [], []
    for i in range(warmup + steps):
        if cuda:
            ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
            ev[0].record()
        else:
            t0 = time.perf_counter()
        with ac:
            loss = model(data)
        if cuda:
            ev[1].record()
        loss.backward()
        if cuda:
            ev[2].record()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            ev[3].record()
            torch.cuda.synchronize()
            f, b_, o = (ev[k].elapsed_time(ev[k + 1]) / 1e3 for k in range(3))
        else:
            f, b_, o = time.perf_counter() - t0, 0.0, 0.0
        losses.append(loss.item())
        if i >= warmup:
            samples.append({"forward_s": f, "backward_s": b_, "optimizer_s": o, "total_s": f + b_ + o})
    tot = sorted(s["total_s"] for s in samples)
    out = {
        "recipe": recipe, "dtype": dtype, "batch": batch, "device": str(dev),
        "torch": torch.__version__, "params": sum(p.numel() for p in model.parameters()),
        "losses": losses, "samples": samples, "step_s_median": tot[len(tot) // 2],
        "images_per_s": batch / tot[len(tot) // 2],
    }
    if cuda:
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated()
        out["max_memory_reserved_bytes"] = torch.cuda.max_memory_reserved()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--record")
    ap.add_argument("--recipe", default="ov2", choices=["ov1", "ov2"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--batch", type=int)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--peak", action="store_true", help="measure matmul peak (bf16, f32) and exit")
    a = ap.parse_args()
    if a.peak:
        torch.backends.cuda.matmul.allow_tf32 = False
        res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "n": 8192}
        for name, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
            x = torch.randn(8192, 8192, device="cuda", dtype=dt)
            y = torch.randn(8192, 8192, device="cuda", dtype=dt)
            for _ in range(3):
                x @ y
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            reps = 10 if dt == torch.bfloat16 else 3
            e0.record()
            for _ in range(reps):
                x @ y
            e1.record()
            torch.cuda.synchronize()
            res[f"{name}_matmul_tflops"] = 2 * 8192**3 * reps / (e0.elapsed_time(e1) / 1e3) / 1e12
        s = json.dumps(res, indent=1)
        if a.out:
            open(a.out, "w").write(s)
        print(s)
        return
    if a.selftest:
        d = {"width": 64, "depth": 2, "heads": 2, "mlp_dim": 128}
        mc = {"vision": d, "text_encoder": {"dims": d}, "v1_decoder": {"dims": d}, "v2_decoder": {"dims": d},
              "model": {"patch": 16}, "resolution": 32, "kept_tokens": 2}
        for r in ("ov1", "ov2"):
            o = run(mc, r, 2, "f32", 1, 1, torch.device("cpu"))
            assert all(math.isfinite(x) for x in o["losses"]), o
            print(r, "ok", o["losses"], o["params"])
        return
    rec = json.load(open(a.record))
    mc, cfg = find_model_config(rec)
    batch = a.batch or cfg.get("batch")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = run(mc, a.recipe, batch, a.dtype, a.warmup, a.steps, torch.device(a.device))
    out["model"] = cfg.get("model")
    out["resolution"] = mc["resolution"]
    out["note"] = "TF32 off (f32 matmuls in full f32, like candle's cuBLAS default)"
    s = json.dumps(out, indent=1)
    if a.out:
        open(a.out, "w").write(s)
    print(s if not a.out else f"{a.recipe} {a.dtype}: median step {out['step_s_median']:.4f} s")


if __name__ == "__main__":
    main()
