#!/usr/bin/env python3
"""The same training step as `ovbench step` (suites/train), in PyTorch eager, for side-by-side timings.

Both recipes, built to compute the same function as suites/train/src (vit, text_encoder,
decoder, loss, recipe, optim .rs):
- ViT: patch embedding as a Linear over (p, p, C)-flattened patches, zero CLS token, fixed 2-D
  sin-cos position embedding (patches only), pre-LN blocks (layer norm eps 1e-6, fused QKV,
  softmax attention with additive masks, tanh-GELU MLP); the decoders get the patch tokens
  without CLS and without the final norm; OpenVision pools LN(mean of patch tokens).
- OpenVision: text encoder (80 tokens, learnable positions, final LN, bias-free projection of
  the last token), v1 decoder over [image; 79 alt-text tokens; 128 learnable queries] (prefix
  bidirectional, queries causal), loss 1 x 0.5 (InfoNCE(img, alt) + InfoNCE(img, sentence)) +
  2 x caption cross-entropy weighted by the non-PAD mask.
- OpenVision 2: floor(N x keep) patch tokens per image (uniform, without replacement), bias-free
  projection, v2 decoder over [kept image tokens; caption[:-1]] (causal or prefix), final LN,
  bias-free 32,000-way head, loss 2 x caption cross-entropy. The encoder's final norm is outside
  the objective and not updated (still counted as a parameter, as ovbench counts it).
- AdamW lr 1.024e-3, b1 .9, b2 .95, eps 1e-8, decoupled weight decay .2 on matrices only
  (Linear weights, embeddings, text positions, queries; not biases, norms, CLS, temperature).

Parameter names map one to one onto ovbench's ParamStore names (see `rust_name`); a Linear's
weight is (out, in) here and (in, out) in candle, so loading transposes it.

Architecture and shapes come from an ovbench record (`--record`, its `model_config`) or from an
export (`--init DIR`, written by the hidden `ovbench step --export-init DIR`), which also holds
ovbench's initial weights, batch, kept-token indices and losses:

  torch_step.py --init DIR --check [--recipe ov1|ov2|both] [--threads N] [--out F]
      loads ovbench's weights and batch, computes the step-0 loss and gradients, one AdamW
      update and the step-1 loss with ovbench's kept indices; prints both sides, exits 1 when
      they differ beyond the tolerances below.
  torch_step.py (--record REC.json | --init DIR) [--recipe ov1|ov2|both] [--threads N]
      [--warmup 1 --steps 5] [--dtype f32|bf16] [--device cpu|cuda] [--out F]
      times warm-up + measured steps (same batch every step, a fresh random mask per step as
      ovbench draws one; with --init, ovbench's own masks): CUDA events on GPU, perf_counter on CPU, split into forward,
      backward and optimizer as ovbench splits them (the loss is read outside the timed parts).
  torch_step.py --selftest   (a tiny CPU run, to check the script)
  torch_step.py --peak       (GPU matmul peak)
"""
import argparse, json, math, os, re, struct, sys, time, warnings

warnings.filterwarnings("ignore", message=".*NumPy.*")
warnings.filterwarnings("ignore", message=".*numpy.*")

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, TEXT_LEN, CAPTION_LEN, V1_QUERIES, LN_EPS = 32000, 80, 128, 128, 1e-6
# Same-function tolerances (f32 both sides, different summation orders and kernels).
TOL_LOSS0 = 1e-5  # relative, step-0 loss from identical weights, batch and mask
TOL_LOSS1 = 1e-4  # relative, step-1 loss after one AdamW update
TOL_GRAD = 1e-3  # relative, per-parameter L2 norm of the step-0 gradient (norms above 1e-4 x max)


class LN(nn.Module):
    def __init__(s, d):
        super().__init__()
        s.scale, s.bias = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(s, x):
        return F.layer_norm(x.float(), (x.shape[-1],), s.scale, s.bias, LN_EPS)


class Lin(nn.Module):
    """y = x W^T + b with W (out, in), as nn.Linear; ovbench's `w` is W^T."""

    def __init__(s, i, o, bias=True, std=0.02):
        super().__init__()
        s.w = nn.Parameter(torch.randn(o, i) * std)
        s.b = nn.Parameter(torch.zeros(o)) if bias else None

    def forward(s, x):
        return F.linear(x, s.w, s.b)


class Attn(nn.Module):
    def __init__(s, w, heads):
        super().__init__()
        s.h, s.qkv, s.out = heads, Lin(w, 3 * w), Lin(w, w)

    def forward(s, x, mask=None):
        b, t, w = x.shape
        q, k, v = s.qkv(x).view(b, t, 3, s.h, w // s.h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype))
        return s.out(y.transpose(1, 2).reshape(b, t, w))


class Mlp(nn.Module):
    def __init__(s, w, hidden):
        super().__init__()
        s.fc1, s.fc2 = Lin(w, hidden), Lin(hidden, w)

    def forward(s, x):
        return s.fc2(F.gelu(s.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(s, d):
        super().__init__()
        w = d["width"]
        s.ln1, s.attn = LN(w), Attn(w, d["heads"])
        s.ln2, s.mlp = LN(w), Mlp(w, d["mlp_dim"])

    def forward(s, x, mask=None):
        x = x + s.attn(s.ln1(x), mask).float()
        return x + s.mlp(s.ln2(x)).float()


class Stack(nn.ModuleList):
    def __init__(s, d):
        super().__init__(Block(d) for _ in range(d["depth"]))

    def forward(s, x, mask=None):
        for b in s:
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
        s.patch_embed = Lin(patch * patch * 3, w, std=(1 / (patch * patch * 3)) ** 0.5)
        s.cls = nn.Parameter(torch.zeros(1, 1, w))
        s.register_buffer("posemb", sincos_2d(res // patch, res // patch, w), persistent=False)
        s.blocks, s.norm = Stack(d), LN(w)

    def forward(s, img):
        b, c, h, w = img.shape
        p = s.p
        x = img.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
        x = s.patch_embed(x).float() + s.posemb
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


def additive_mask(t, dev, allowed):
    i, j = torch.arange(t, device=dev)[:, None], torch.arange(t, device=dev)[None]
    return torch.where(allowed(i, j), 0.0, -1e9)


class DecoderV1(nn.Module):
    def __init__(s, d, img_w, txt_w):
        super().__init__()
        s.img_proj, s.txt_proj = Lin(img_w, d["width"]), Lin(txt_w, d["width"])
        s.queries = nn.Parameter(torch.randn(V1_QUERIES, d["width"]) * 0.02)
        s.blocks, s.norm, s.head = Stack(d), LN(d["width"]), Lin(d["width"], VOCAB, bias=False)

    def forward(s, img, alt):
        b = img.shape[0]
        x = torch.cat([s.img_proj(img).float(), s.txt_proj(alt).float(), s.queries.expand(b, -1, -1)], 1)
        pre = x.shape[1] - V1_QUERIES
        m = additive_mask(x.shape[1], x.device, lambda i, j: (j < pre) | ((i >= pre) & (j <= i)))
        return s.head(s.norm(s.blocks(x, m)[:, pre:])).float()


class DecoderV2(nn.Module):
    def __init__(s, d, img_w, prefix):
        super().__init__()
        s.img_proj = Lin(img_w, d["width"], bias=False)
        s.embed = nn.Parameter(torch.randn(VOCAB, d["width"]) * 0.02)
        s.blocks, s.norm, s.head = Stack(d), LN(d["width"]), Lin(d["width"], VOCAB, bias=False)
        s.prefix = prefix

    def forward(s, kept, text_in):
        k = kept.shape[1]
        x = torch.cat([s.img_proj(kept).float(), s.embed[text_in]], 1)
        if s.prefix:
            m = additive_mask(x.shape[1], x.device, lambda i, j: (j < k) | (j <= i))
        else:
            m = additive_mask(x.shape[1], x.device, lambda i, j: j <= i)
        return s.head(s.norm(s.blocks(x, m)[:, k:])).float()


def xent(logits, targets, weights):
    logp = F.log_softmax(logits.reshape(-1, logits.shape[-1]), -1)
    picked = logp.gather(1, targets.reshape(-1, 1)).reshape(targets.shape)
    return -(picked * weights).sum() / weights.sum()


def l2n(x):
    # As loss.rs: x / sqrt(sum x^2 + 1e-12).
    return x / (x.square().sum(-1, keepdim=True) + 1e-12).sqrt()


def info_nce(a, b, log_t):
    logits = l2n(a) @ l2n(b.float()).t() * log_t.exp()
    lab = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab))


def patch_of(mc):
    m = mc["model"]
    return m["patch"] if isinstance(m, dict) else int(str(m).split("/")[-1])


def kept_tokens(mc):
    n = (mc["resolution"] // patch_of(mc)) ** 2
    return mc.get("kept_tokens") or int(math.floor(n * mc["keep_ratio"] + 1e-9))


class Model(nn.Module):
    def __init__(s, mc, recipe):
        super().__init__()
        v = mc["vision"]
        s.recipe = recipe
        s.keep = kept_tokens(mc)
        s.vit = ViT(v, patch_of(mc), mc["resolution"])
        if recipe == "ov1":
            td = mc["text_encoder"]["dims"]
            s.text = TextEncoder(td, v["width"])
            s.dec = DecoderV1(mc["v1_decoder"]["dims"], v["width"], td["width"])
            s.log_t = nn.Parameter(torch.tensor([math.log(1 / 0.07)]))
        else:
            s.dec = DecoderV2(mc["v2_decoder"]["dims"], v["width"], mc.get("v2_attention") == "prefix")
            # OpenVision 2 never uses the pooled embedding: its final norm gets no gradient.
            s.vit.norm.requires_grad_(False)

    def forward(s, batch, keep_idx=None):
        """Returns (total, caption, contrastive or None). `keep_idx` (B, K): the kept patches
        (ovbench's for a check); None draws a fresh uniform subset, as each ovbench step does."""
        patches = s.vit(batch["images"])
        if s.recipe == "ov2":
            b, n, d = patches.shape
            if keep_idx is None:
                keep_idx = torch.rand(b, n, device=patches.device).argsort(1)[:, : s.keep]
            kept = patches.gather(1, keep_idx[..., None].expand(-1, -1, d))
            cap = xent(s.dec(kept, batch["v2_input"]), batch["v2_targets"], batch["v2_weights"])
            return 2.0 * cap, cap, None
        pooled = s.vit.norm(patches.mean(1))
        a, alt_tok = s.text(batch["alt_text"])
        se, _ = s.text(batch["sentence"])
        con = 0.5 * (info_nce(pooled, a, s.log_t) + info_nce(pooled, se, s.log_t))
        cap = xent(s.dec(patches, alt_tok[:, :-1]), batch["v1_targets"], batch["v1_weights"])
        return con + 2.0 * cap, cap, con


def rust_name(torch_name):
    """This model's parameter name -> ovbench's ParamStore name."""
    n = re.sub(r"(^|\.)blocks\.(\d+)\.", r"\1blocks.block\2.", torch_name)
    for a, b in (("vit.", "image_encoder."), ("text.", "text_encoder."), ("dec.", "text_decoder.")):
        if n.startswith(a):
            return b + n[len(a):]
    return {"log_t": "log_temperature"}.get(n, n)


def linear_weights(model):
    return {f"{m}.w" if m else "w" for m, mod in model.named_modules() if isinstance(mod, Lin)}


def decays(name, p):
    """Decoupled weight decay on matrices only, as ovbench's ParamStore marks them."""
    return p.ndim >= 2 and not name.endswith("cls")


def optimizer(model, weight_decay=0.2):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1.024e-3, betas=(0.9, 0.95), eps=1e-8, foreach=True)


# --- safetensors, read without the safetensors package ---------------------------------------

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


def load_export(model, d):
    """Loads ovbench's exported weights into `model`; returns (batch, keep indices, meta)."""
    meta = json.load(open(os.path.join(d, "meta.json")))
    weights = read_safetensors(os.path.join(d, "params.safetensors"))
    lin = linear_weights(model)
    ours = dict(model.named_parameters())
    names = {rust_name(n): n for n in ours}
    missing = sorted(set(weights) - set(names))
    extra = sorted(set(names) - set(weights))
    if missing or extra:
        raise SystemExit(f"{d}: parameter names differ: only in ovbench {missing[:5]}, only in torch {extra[:5]}")
    with torch.no_grad():
        for rn, tn in names.items():
            w = weights[rn].t() if tn in lin else weights[rn]
            if tuple(w.shape) != tuple(ours[tn].shape):
                raise SystemExit(f"{rn}: ovbench shape {tuple(weights[rn].shape)}, torch {tuple(ours[tn].shape)}")
            ours[tn].copy_(w)
    del weights
    raw = read_safetensors(os.path.join(d, "batch.safetensors"))
    batch = {k: v.clone() for k, v in raw.items() if not k.startswith("keep_")}
    keep = {k: v.clone() for k, v in raw.items() if k.startswith("keep_")}
    return batch, keep, meta


def make_batch(b, res, g):
    """Synthetic batch of the right shapes (used when no export is given)."""
    def ids(n, length, cls_last):
        t = torch.randint(999, 30522, (b, n), generator=g)
        lens = torch.randint(length // 2, length + 1, (b, 1), generator=g)
        keep = torch.arange(n)[None] < lens
        t = torch.where(keep, t, 0)
        if cls_last:
            t[:, -1] = 101
        return t, keep.float()
    cap, cw = ids(CAPTION_LEN, 70, True)
    alt, _ = ids(TEXT_LEN, 12, True)
    sent, _ = ids(TEXT_LEN, 18, True)
    v1t = torch.cat([cap[:, 1:], torch.zeros(b, 1, dtype=cap.dtype)], 1)
    return {
        "images": torch.randn(b, 3, res, res, generator=g), "caption": cap,
        "alt_text": alt, "sentence": sent,
        "v2_input": cap[:, :-1], "v2_targets": cap[:, 1:], "v2_weights": (cap[:, 1:] != 0).float(),
        "v1_targets": v1t, "v1_weights": (v1t != 0).float(),
    }


def set_threads(n):
    if n:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def check(d, recipe):
    """Same function as ovbench: parameter names, shapes and count; step-0 loss and gradient
    norms; the step-1 loss after one AdamW update; decay flags."""
    meta = json.load(open(os.path.join(d, "meta.json")))
    mc = meta["model_config"]
    torch.manual_seed(0)
    model = Model(mc, recipe)
    batch, keep, meta = load_export(model, d)
    params = sum(p.numel() for p in model.parameters())
    problems = []
    if params != meta["params_total"]:
        problems.append(f"parameter count: torch {params}, ovbench {meta['params_total']}")
    by_name = {p["name"]: p for p in meta["params"]}
    for n, p in model.named_parameters():
        m = by_name[rust_name(n)]
        if decays(n, p) != m["decay"]:
            problems.append(f"{m['name']}: weight decay torch {decays(n, p)}, ovbench {m['decay']}")
        if p.requires_grad != m["in_objective"]:
            problems.append(f"{m['name']}: trained torch {p.requires_grad}, ovbench {m['in_objective']}")
    opt = optimizer(model, meta["config"]["optimizer"]["weight_decay"])
    forward_only = len(meta["losses"]) < 2
    with torch.set_grad_enabled(not forward_only):
        total, cap, con = model(batch, keep["keep_step0"])
    l0 = {"total": total.item(), "caption": cap.item(), "contrastive": None if con is None else con.item()}
    ov0 = meta["losses"][0]
    out = {
        "recipe": recipe, "export": d, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "params_torch": params, "params_ovbench": meta["params_total"],
        "loss0_torch": l0["total"], "loss0_ovbench": ov0["total"], "loss0_rel_diff": rel(l0["total"], ov0["total"]),
        "caption0_torch": l0["caption"], "caption0_ovbench": ov0["caption"],
        "contrastive0_torch": l0["contrastive"], "contrastive0_ovbench": ov0["contrastive"],
        "forward_only": forward_only,
        "tolerances": {"loss0_rel": TOL_LOSS0, "loss1_rel": TOL_LOSS1, "grad_norm_rel": TOL_GRAD},
    }
    if out["loss0_rel_diff"] > TOL_LOSS0:
        problems.append(f"step-0 loss: torch {l0['total']:.7f}, ovbench {ov0['total']:.7f} (rel diff {out['loss0_rel_diff']:.2e} > {TOL_LOSS0})")
    if forward_only:
        out["problems"] = problems
        out["same_function"] = not problems
        return out
    total.backward()
    grads = []
    gmax = max((m["grad_norm"] or 0.0) for m in meta["params"])
    for n, p in model.named_parameters():
        m = by_name[rust_name(n)]
        if m["grad_norm"] is None or p.grad is None:
            if (m["grad_norm"] is None) != (p.grad is None):
                problems.append(f"{m['name']}: gradient present torch {p.grad is not None}, ovbench {m['grad_norm'] is not None}")
            continue
        tn = p.grad.double().norm().item()
        if m["grad_norm"] > 1e-4 * gmax:
            grads.append((rel(tn, m["grad_norm"]), m["name"], tn, m["grad_norm"]))
    grads.sort(reverse=True)
    opt.step()
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        t1, _, _ = model(batch, keep["keep_step1"])
    ov1 = meta["losses"][1]
    out.update({
        "loss1_torch": t1.item(), "loss1_ovbench": ov1["total"], "loss1_rel_diff": rel(t1.item(), ov1["total"]),
        "grad_norms_compared": len(grads),
        "grad_norm_max_rel_diff": grads[0][0] if grads else 0.0,
        "grad_norm_worst": grads[0][1] if grads else None,
    })
    if out["loss1_rel_diff"] > TOL_LOSS1:
        problems.append(f"step-1 loss: torch {t1.item():.7f}, ovbench {ov1['total']:.7f} (rel diff {out['loss1_rel_diff']:.2e} > {TOL_LOSS1})")
    if grads and grads[0][0] > TOL_GRAD:
        problems.append(f"gradient norm of {grads[0][1]}: torch {grads[0][2]:.6g}, ovbench {grads[0][3]:.6g} (rel diff {grads[0][0]:.2e} > {TOL_GRAD})")
    out["problems"] = problems
    out["same_function"] = not problems
    return out


def run(mc, recipe, batch, dtype, warmup, steps, dev, init=None):
    torch.manual_seed(0)
    model = Model(mc, recipe)
    data, keeps = None, {}
    if init:
        data, keeps, _ = load_export(model, init)
    model = model.to(dev)
    opt = optimizer(model)
    if data is None:
        data = make_batch(batch, mc["resolution"], torch.Generator().manual_seed(0))
    data = {k: v.to(dev) for k, v in data.items()}
    batch = data["images"].shape[0]
    cuda = dev.type == "cuda"
    ac = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    samples, warmup_losses = [], []
    for i in range(warmup + steps):
        if cuda:
            ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
            ev[0].record()
        else:
            t0 = time.perf_counter()
        keep = keeps.get(f"keep_step{i}")  # ovbench's mask at this step, when exported
        with ac:
            loss, _, _ = model(data, None if keep is None else keep.to(dev))
        if cuda:
            ev[1].record()
        else:
            t1 = time.perf_counter()
        value = loss.item()  # read outside the timed parts, as ovbench reads it
        if not cuda:
            t1b = time.perf_counter()
        loss.backward()
        if cuda:
            ev[2].record()
        else:
            t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            ev[3].record()
            torch.cuda.synchronize()
            f, b_, o = (ev[k].elapsed_time(ev[k + 1]) / 1e3 for k in range(3))
        else:
            t3 = time.perf_counter()
            f, b_, o = t1 - t0, t2 - t1b, t3 - t2
        del loss
        if i >= warmup:
            samples.append({"step": i, "forward_s": f, "backward_s": b_, "optimizer_s": o, "total_s": f + b_ + o, "loss": value})
        else:
            warmup_losses.append(value)
    tot = sorted(s["total_s"] for s in samples)
    med = tot[len(tot) // 2] if len(tot) % 2 else 0.5 * (tot[len(tot) // 2 - 1] + tot[len(tot) // 2])
    out = {
        "recipe": recipe, "dtype": dtype, "batch": batch, "device": str(dev),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "warmup_losses": warmup_losses, "samples": samples, "step_s_median": med,
        "images_per_s": batch / med, "weights_from": init,
    }
    if cuda:
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated()
        out["max_memory_reserved_bytes"] = torch.cuda.max_memory_reserved()
    return out


def find_model_config(obj):
    if isinstance(obj, dict):
        if "model_config" in obj:
            return obj["model_config"], obj.get("config", {})
        for v in obj.values():
            r = find_model_config(v)
            if r:
                return r
    return None


def peak(a):
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
    return res


def emit(obj, path, line):
    s = json.dumps(obj, indent=1)
    if path:
        with open(path + ".tmp", "w") as f:
            f.write(s)
        os.replace(path + ".tmp", path)
        print(line)
    else:
        print(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", help="an ovbench step record (architecture and batch size)")
    ap.add_argument("--init", help="an `ovbench step --export-init` folder (architecture, weights, batch)")
    ap.add_argument("--check", action="store_true", help="same-function check against --init")
    ap.add_argument("--recipe", default="ov2", choices=["ov1", "ov2", "both"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--batch", type=int)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--peak", action="store_true", help="measure matmul peak (bf16, f32) and exit")
    a = ap.parse_args()
    set_threads(a.threads)
    recipes = ["ov1", "ov2"] if a.recipe == "both" else [a.recipe]
    if a.peak:
        res = peak(a)
        emit(res, a.out, json.dumps(res))
        return 0
    if a.selftest:
        d = {"width": 64, "depth": 2, "heads": 2, "mlp_dim": 128}
        mc = {"vision": d, "text_encoder": {"dims": d}, "v1_decoder": {"dims": d}, "v2_decoder": {"dims": d},
              "model": {"patch": 16}, "resolution": 32, "keep_ratio": 0.5}
        for r in ("ov1", "ov2"):
            o = run(mc, r, 2, "f32", 1, 1, torch.device("cpu"))
            assert all(math.isfinite(s["loss"]) for s in o["samples"]), o
            print(r, "ok", o["warmup_losses"], o["params"])
        return 0
    if a.check:
        if not a.init:
            ap.error("--check needs --init")
        res = [check(os.path.join(a.init, r), r) for r in recipes]
        for r in res:
            more = "" if r["forward_only"] else (
                f"; step-1 loss torch {r['loss1_torch']:.7f} ovbench {r['loss1_ovbench']:.7f} "
                f"(rel {r['loss1_rel_diff']:.1e}); grad norms max rel {r['grad_norm_max_rel_diff']:.1e} "
                f"over {r['grad_norms_compared']}")
            print(f"{r['recipe']}: params torch {r['params_torch']} ovbench {r['params_ovbench']}; "
                  f"step-0 loss torch {r['loss0_torch']:.7f} ovbench {r['loss0_ovbench']:.7f} "
                  f"(rel {r['loss0_rel_diff']:.1e})" + more
                  + ("" if r["same_function"] else "\n  DIFFERENT: " + "; ".join(r["problems"])))
        if a.out:
            emit(res, a.out, f"check: {a.out}")
        return 0 if all(r["same_function"] for r in res) else 1
    if a.init:
        mc = json.load(open(os.path.join(a.init, recipes[0], "meta.json")))["model_config"]
        batch = None
    elif a.record:
        mc, cfg = find_model_config(json.load(open(a.record)))
        batch = a.batch or cfg.get("batch")
    else:
        ap.error("give --record or --init (or --selftest / --peak)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    runs = []
    for r in recipes:
        out = run(mc, r, batch, a.dtype, a.warmup, a.steps, torch.device(a.device),
                  init=os.path.join(a.init, r) if a.init else None)
        out["model"] = mc.get("model")
        out["resolution"] = mc["resolution"]
        out["note"] = "TF32 off (f32 matmuls in full f32, like candle's cuBLAS default)"
        runs.append(out)
        print(f"{r} {a.dtype}: median step {out['step_s_median']:.4f} s", file=sys.stderr)
    emit(runs[0] if len(runs) == 1 else {"runs": runs}, a.out,
         "; ".join(f"{o['recipe']} {o['dtype']}: median step {o['step_s_median']:.4f} s" for o in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
