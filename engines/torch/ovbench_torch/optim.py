"""AdamW as the execution object asks: moment dtypes (`mu`, `nu`), betas, eps, decoupled
weight decay on a decay set; learning rate from the step configuration.

With both moments in f32, torch.optim.AdamW (foreach, the default people train with) does
the update. Otherwise a foreach implementation keeps each moment in its dtype and computes the
update in f32, as optax's `scale_by_adam(mu_dtype=...)` does: the moment is updated in f32 and
stored back in its dtype.
"""
import torch

from .model import DTYPES, Lin


def decays(model, decay_set):
    """Name -> whether the parameter is decayed.
    `kernels`: only matrices of dense layers (the released code's `.*/kernel$`);
    `matrices_and_embeddings`: every matrix but the CLS token (ovbench's ParamStore today:
    also token embeddings, text positions and v1 queries)."""
    lin = {f"{m}.w" if m else "w" for m, mod in model.named_modules() if isinstance(mod, Lin)}
    out = {}
    for n, p in model.named_parameters():
        if decay_set == "kernels":
            out[n] = n in lin
        elif decay_set == "matrices_and_embeddings":
            out[n] = p.ndim >= 2 and not n.endswith("cls")
        else:
            raise ValueError(f"unknown decay_set {decay_set!r} (kernels or matrices_and_embeddings)")
    return out


class MomentAdamW(torch.optim.Optimizer):
    """AdamW with moments stored in given dtypes (bias-corrected, decoupled decay)."""

    def __init__(self, params, lr, betas, eps, weight_decay, mu_dtype, nu_dtype):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.mu_dtype, self.nu_dtype = mu_dtype, nu_dtype

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            ps = [p for p in g["params"] if p.grad is not None]
            if not ps:
                continue
            b1, b2 = g["betas"]
            for p in ps:
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["mu"] = torch.zeros_like(p, dtype=self.mu_dtype)
                    st["nu"] = torch.zeros_like(p, dtype=self.nu_dtype)
            for p in ps:
                self.state[p]["step"] += 1
            t = self.state[ps[0]]["step"]
            grads = [p.grad.float() for p in ps]
            mu = [self.state[p]["mu"].float() for p in ps]
            nu = [self.state[p]["nu"].float() for p in ps]
            torch._foreach_lerp_(mu, grads, 1 - b1)
            torch._foreach_mul_(nu, b2)
            torch._foreach_addcmul_(nu, grads, grads, 1 - b2)
            for p, m, v in zip(ps, mu, nu):
                self.state[p]["mu"].copy_(m)
                self.state[p]["nu"].copy_(v)
            bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
            if g["weight_decay"]:
                torch._foreach_mul_(ps, 1 - g["lr"] * g["weight_decay"])
            denom = torch._foreach_sqrt([v / bc2 for v in nu])
            torch._foreach_add_(denom, g["eps"])
            upd = torch._foreach_div([m / bc1 for m in mu], denom)
            torch._foreach_add_(ps, [u.to(p.dtype) for u, p in zip(upd, ps)], alpha=-g["lr"])


def build(model, opt_cfg, lr, own=False):
    """The optimizer of `opt_cfg` (the execution's `optimizer`) over the trainable parameters
    (`own`: the moment-dtype AdamW even with f32 moments, for its test)."""
    flags = decays(model, opt_cfg.get("decay_set", "matrices_and_embeddings"))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    wd = opt_cfg.get("weight_decay", 0.2)
    groups = [
        {"params": [p for n, p in named if flags[n]], "weight_decay": wd},
        {"params": [p for n, p in named if not flags[n]], "weight_decay": 0.0},
    ]
    betas = (opt_cfg.get("b1", 0.9), opt_cfg.get("b2", 0.95))
    eps = opt_cfg.get("eps", 1e-8)
    mu, nu = opt_cfg.get("mu", "f32"), opt_cfg.get("nu", "f32")
    if mu == "f32" and nu == "f32" and not own:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)
    return MomentAdamW(groups, lr, betas, eps, wd, DTYPES[mu], DTYPES[nu])


def state_bytes(opt):
    """Bytes of optimizer state (moments; step counters excluded)."""
    n = 0
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v) and k in ("exp_avg", "exp_avg_sq", "mu", "nu"):
                n += v.numel() * v.element_size()
    return n
