"""OpenVision and OpenVision 2 in PyTorch: the same function as ovbench's candle models
(suites/train/src: vit, text_encoder, decoder, loss, recipe .rs), run the way the execution
object (suites/train/src/policy.rs, docs/policies-and-memory.md) asks.

- ViT: patch embedding as a Linear over (p, p, C)-flattened patches, zero CLS token, fixed 2-D
  sin-cos position embedding (patches only), pre-LN blocks (layer norm eps 1e-6, fused QKV,
  SDPA attention, tanh-GELU MLP); the decoders get the patch tokens without CLS and without
  the final norm; OpenVision pools LN(mean of patch tokens).
- OpenVision: text encoder (80 tokens, learnable positions, final LN, bias-free projection of
  the last token), v1 decoder over [image; 79 alt-text tokens; 128 learnable queries] (prefix
  bidirectional, queries causal), loss 1 x 0.5 (InfoNCE(img, alt) + InfoNCE(img, sentence)) +
  2 x caption cross-entropy weighted by the non-PAD mask. Across ranks the contrastive loss
  all-gathers the features, as the released code's `local_loss` does: each rank scores its own
  rows against every rank's columns.
- OpenVision 2: floor(N x keep) patch tokens per image, bias-free projection, v2 decoder over
  [kept image tokens; caption[:-1]] (causal or prefix), final LN, bias-free 32,000-way head,
  loss 2 x caption cross-entropy. The encoder's final norm is outside the objective.

Execution per module (`image_encoder`, `text_encoder`, `decoder`, `head`): `compute` is the
autocast dtype of the module (f32: autocast off), `recompute` checkpoints the module block by
block (the head: head and loss together). `attention_probs`: `keep` runs SDPA's math kernel,
which saves the probabilities for the backward pass; `recompute` lets SDPA pick its fused
kernel (flash / memory-efficient on GPUs), which recomputes them. `loss_buffers`:
`materialized` builds f32 log-softmax and a one-hot target as the released JAX loss does;
`fused` uses F.cross_entropy (one saved (N, V) buffer).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

VOCAB, TEXT_LEN, V1_QUERIES, LN_EPS = 32000, 80, 128, 1e-6
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


class Run:
    """How one module runs: autocast dtype (None: f32), recompute, attention kernel."""

    def __init__(self, device_type, compute="f32", recompute=False, keep_probs=True):
        self.device_type = device_type
        self.dtype = None if compute == "f32" else DTYPES[compute]
        self.recompute = recompute
        self.keep_probs = keep_probs

    def autocast(self):
        if self.dtype is None:
            return torch.autocast(self.device_type, enabled=False)
        return torch.autocast(self.device_type, dtype=self.dtype)


def sdpa(q, k, v, mask, causal, keep_probs):
    if keep_probs:
        # The math kernel materialises softmax(QK^T) and autograd keeps it for backward.
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


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

    def forward(s, x, mask, causal, keep_probs):
        b, t, w = x.shape
        q, k, v = s.qkv(x).view(b, t, 3, s.h, w // s.h).permute(2, 0, 3, 1, 4)
        if mask is not None:
            mask = mask.to(q.dtype)
        y = sdpa(q, k, v, mask, causal, keep_probs)
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

    def forward(s, x, mask=None, causal=False, keep_probs=True):
        x = x + s.attn(s.ln1(x), mask, causal, keep_probs).float()
        return x + s.mlp(s.ln2(x)).float()


class Stack(nn.ModuleList):
    def __init__(s, d):
        super().__init__(Block(d) for _ in range(d["depth"]))
        s.run = Run("cpu")

    def forward(s, x, mask=None, causal=False):
        r = s.run
        for b in s:
            if r.recompute and torch.is_grad_enabled():
                # Per block, as remat='full' does: only each block's input is kept.
                x = checkpoint(b, x, mask, causal, r.keep_probs, use_reentrant=False)
            else:
                x = b(x, mask, causal, r.keep_probs)
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


class Head(nn.Module):
    """The bias-free vocabulary head and the token cross-entropy (per-token NLL)."""

    def __init__(s, width, materialized):
        super().__init__()
        s.proj = Lin(width, VOCAB, bias=False)
        s.materialized = materialized
        s.run = Run("cpu")

    def nll(s, h, targets):
        with s.run.autocast():
            logits = s.proj(h if s.run.dtype is not None else h.float())
        logits = logits.float().reshape(-1, VOCAB)
        t = targets.reshape(-1)
        if s.materialized:
            # As the released loss: f32 log-softmax and a one-hot target, both kept.
            logp = F.log_softmax(logits, -1)
            onehot = F.one_hot(t, VOCAB).to(logp.dtype)
            nll = -(onehot * logp).sum(-1)
        else:
            nll = F.cross_entropy(logits, t, reduction="none")
        return nll.reshape(targets.shape)

    def forward(s, h, targets):
        if s.run.recompute and torch.is_grad_enabled():
            return checkpoint(s.nll, h, targets, use_reentrant=False)
        return s.nll(h, targets)


class DecoderV1(nn.Module):
    def __init__(s, d, img_w, txt_w, materialized):
        super().__init__()
        s.img_proj, s.txt_proj = Lin(img_w, d["width"]), Lin(txt_w, d["width"])
        s.queries = nn.Parameter(torch.randn(V1_QUERIES, d["width"]) * 0.02)
        s.blocks, s.norm, s.head = Stack(d), LN(d["width"]), Head(d["width"], materialized)

    def hidden(s, img, alt):
        b = img.shape[0]
        x = torch.cat([s.img_proj(img).float(), s.txt_proj(alt).float(), s.queries.expand(b, -1, -1)], 1)
        pre = x.shape[1] - V1_QUERIES
        m = additive_mask(x.shape[1], x.device, lambda i, j: (j < pre) | ((i >= pre) & (j <= i)))
        return s.norm(s.blocks(x, m)[:, pre:])


class DecoderV2(nn.Module):
    def __init__(s, d, img_w, prefix, materialized):
        super().__init__()
        s.img_proj = Lin(img_w, d["width"], bias=False)
        s.embed = nn.Parameter(torch.randn(VOCAB, d["width"]) * 0.02)
        s.blocks, s.norm, s.head = Stack(d), LN(d["width"]), Head(d["width"], materialized)
        s.prefix = prefix

    def hidden(s, kept, text_in):
        k = kept.shape[1]
        x = torch.cat([s.img_proj(kept).float(), s.embed[text_in]], 1)
        if s.prefix:
            m = additive_mask(x.shape[1], x.device, lambda i, j: (j < k) | (j <= i))
            return s.norm(s.blocks(x, m)[:, k:])
        # Plain causal over [image; text]: SDPA's causal kernels, no mask tensor.
        return s.norm(s.blocks(x, None, causal=True)[:, k:])


def weighted_nll(nll, weights, count, scale):
    """sum(w * nll) / count x scale: `count` is the global batch's token count and `scale` the
    number of ranks, so that DDP's mean of the ranks' gradients is the global mean's."""
    return (nll * weights).sum() / count * scale


def l2n(x):
    # As loss.rs: x / sqrt(sum x^2 + 1e-12).
    return x / (x.square().sum(-1, keepdim=True) + 1e-12).sqrt()


class _Gather(torch.autograd.Function):
    """All-gather along the batch with a gradient: each rank's share of the gathered
    gradient is summed over the ranks (an all-reduce of the whole, then this rank's rows),
    as the transpose of JAX's all_gather. Works on gloo, which has no reduce-scatter."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, g):
        import torch.distributed as dist

        g = g.contiguous()
        dist.all_reduce(g)
        return g[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather(x, world):
    return x if world == 1 else _Gather.apply(x)


def local_info_nce(img, txt, log_t, rank, world):
    """This rank's rows of the symmetric InfoNCE over the global batch: its images against
    every rank's texts, its texts against every rank's images (the released `local_loss`)."""
    img, txt = l2n(img), l2n(txt.float())
    all_img, all_txt = gather(img, world), gather(txt, world)
    t = log_t.exp()
    lab = torch.arange(img.shape[0], device=img.device) + rank * img.shape[0]
    i2t = F.cross_entropy(img @ all_txt.t() * t, lab)
    t2i = F.cross_entropy(txt @ all_img.t() * t, lab)
    return 0.5 * (i2t + t2i)


def patch_of(mc):
    m = mc["model"]
    return m["patch"] if isinstance(m, dict) else int(str(m).split("/")[-1])


def kept_tokens(mc):
    n = (mc["resolution"] // patch_of(mc)) ** 2
    return mc.get("kept_tokens") or int(math.floor(n * mc["keep_ratio"] + 1e-9))


# The execution candle runs by default (all f32, attention probabilities kept, the
# released loss buffers), for callers that give none.
DEFAULT_EXECUTION = {
    "modules": {m: {"compute": "f32", "params": "f32", "recompute": False}
                for m in ("image_encoder", "text_encoder", "decoder", "head")},
    "optimizer": {"mu": "f32", "nu": "f32", "b1": 0.9, "b2": 0.95, "eps": 1e-8,
                  "weight_decay": 0.2, "decay_set": "matrices_and_embeddings"},
    "attention_probs": "keep",
    "loss_buffers": "materialized",
}


class Model(nn.Module):
    def __init__(s, mc, recipe, execution=None, rank=0, world=1):
        super().__init__()
        ex = execution or DEFAULT_EXECUTION
        materialized = ex.get("loss_buffers", "materialized") == "materialized"
        v = mc["vision"]
        s.recipe, s.rank, s.world = recipe, rank, world
        s.keep = kept_tokens(mc)
        s.vit = ViT(v, patch_of(mc), mc["resolution"])
        if recipe == "ov1":
            td = mc["text_encoder"]["dims"]
            s.text = TextEncoder(td, v["width"])
            s.dec = DecoderV1(mc["v1_decoder"]["dims"], v["width"], td["width"], materialized)
            s.log_t = nn.Parameter(torch.tensor([math.log(1 / 0.07)]))
        else:
            s.dec = DecoderV2(mc["v2_decoder"]["dims"], v["width"], mc.get("v2_attention") == "prefix", materialized)
            # OpenVision 2 never uses the pooled embedding: its final norm gets no gradient.
            s.vit.norm.requires_grad_(False)
        s.execution = ex
        s.caption_count = None  # global non-PAD token count, set by the runner
        s.set_device_type("cpu")

    def set_device_type(s, device_type):
        ex = s.execution
        keep = ex.get("attention_probs", "keep") == "keep"
        mods = ex["modules"]

        def run(name):
            m = mods.get(name, {})
            return Run(device_type, m.get("compute", "f32"), bool(m.get("recompute", False)), keep)

        s.runs = {n: run(n) for n in ("image_encoder", "text_encoder", "decoder", "head")}
        s.vit.blocks.run = s.runs["image_encoder"]
        if s.recipe == "ov1":
            s.text.blocks.run = s.runs["text_encoder"]
        s.dec.blocks.run = s.runs["decoder"]
        s.dec.head.run = s.runs["head"]

    def caption(s, hidden, targets, weights):
        nll = s.dec.head(hidden, targets)
        count = s.caption_count if s.caption_count is not None else weights.sum()
        return weighted_nll(nll, weights, count, s.world)

    def forward(s, batch, keep_idx=None):
        """Returns (total, caption, contrastive or None) of this rank's rows. `keep_idx` (B, K):
        the kept patches; None draws a fresh uniform subset."""
        r = s.runs
        with r["image_encoder"].autocast():
            patches = s.vit(batch["images"])
        if s.recipe == "ov2":
            b, n, d = patches.shape
            if keep_idx is None:
                keep_idx = torch.rand(b, n, device=patches.device).argsort(1)[:, : s.keep]
            kept = patches.gather(1, keep_idx[..., None].expand(-1, -1, d))
            with r["decoder"].autocast():
                h = s.dec.hidden(kept, batch["v2_input"])
            cap = s.caption(h, batch["v2_targets"], batch["v2_weights"])
            return 2.0 * cap, cap, None
        pooled = s.vit.norm(patches.mean(1))
        with r["text_encoder"].autocast():
            a, alt_tok = s.text(batch["alt_text"])
            se, _ = s.text(batch["sentence"])
        with torch.autocast(pooled.device.type, enabled=False):
            con = 0.5 * (local_info_nce(pooled, a, s.log_t, s.rank, s.world)
                         + local_info_nce(pooled, se, s.log_t, s.rank, s.world))
        with r["decoder"].autocast():
            h = s.dec.hidden(patches, alt_tok[:, :-1])
        cap = s.caption(h, batch["v1_targets"], batch["v1_weights"])
        return con + 2.0 * cap, cap, con


def rust_name(torch_name):
    """This model's parameter name -> ovbench's ParamStore name."""
    import re

    n = re.sub(r"(^|\.)blocks\.(\d+)\.", r"\1blocks.block\2.", torch_name)
    n = n.replace("dec.head.proj.", "dec.head.")
    for a, b in (("vit.", "image_encoder."), ("text.", "text_encoder."), ("dec.", "text_decoder.")):
        if n.startswith(a):
            return b + n[len(a):]
    return {"log_t": "log_temperature"}.get(n, n)


def module_of(torch_name):
    """ovbench's Module of a parameter (params_by_module)."""
    return {"vit": "image_encoder", "text": "text_encoder", "dec": "text_decoder"}.get(
        torch_name.split(".")[0], "temperature")


def linear_weights(model):
    return {f"{m}.w" if m else "w" for m, mod in model.named_modules() if isinstance(mod, Lin)}
