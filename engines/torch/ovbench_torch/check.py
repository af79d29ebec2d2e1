"""The same-function check against ovbench's candle models: ovbench's exported weights, batch
and kept-patch indices (`ovbench step --export-init`) loaded into the torch model; parameter
names, shapes, count, decay and training flags; the step-0 loss and per-parameter gradient
norms; the step-1 loss after one AdamW update."""
import json
import os

import torch

from . import model as M
from . import optim as O
from .io import load_inputs, load_weights

# Same-function tolerances (f32 on both sides, different summation orders and kernels).
TOL_LOSS0 = 1e-5  # relative, step-0 loss from identical weights, batch and mask
TOL_LOSS1 = 1e-4  # relative, step-1 loss after one AdamW update
TOL_GRAD = 1e-3  # relative, per-parameter L2 norm of the step-0 gradient (norms above 1e-4 x max)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def same_function(d, recipe, execution):
    meta = json.load(open(os.path.join(d, "meta.json")))
    mc = meta["model_config"]
    torch.manual_seed(0)
    model = M.Model(mc, recipe, execution)
    load_weights(model, os.path.join(d, "params.safetensors"))
    batch, keep = load_inputs(os.path.join(d, "batch.safetensors"))
    params = sum(p.numel() for p in model.parameters())
    problems = []
    if params != meta["params_total"]:
        problems.append(f"parameter count: torch {params}, ovbench {meta['params_total']}")
    by_name = {p["name"]: p for p in meta["params"]}
    flags = O.decays(model, execution["optimizer"]["decay_set"])
    for n, p in model.named_parameters():
        m = by_name[M.rust_name(n)]
        if flags[n] != m["decay"]:
            problems.append(f"{m['name']}: weight decay torch {flags[n]}, ovbench {m['decay']}")
        if p.requires_grad != m["in_objective"]:
            problems.append(f"{m['name']}: trained torch {p.requires_grad}, ovbench {m['in_objective']}")
    opt = O.build(model, execution["optimizer"], meta["config"]["optimizer"]["lr"])
    forward_only = len(meta["losses"]) < 2
    with torch.set_grad_enabled(not forward_only):
        total, cap, con = model(batch, keep[0])
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
        problems.append(f"step-0 loss: torch {l0['total']:.7f}, ovbench {ov0['total']:.7f} "
                        f"(rel diff {out['loss0_rel_diff']:.2e} > {TOL_LOSS0})")
    if forward_only:
        out["problems"] = problems
        out["same_function"] = not problems
        return out
    total.backward()
    grads = []
    gmax = max((m["grad_norm"] or 0.0) for m in meta["params"])
    for n, p in model.named_parameters():
        m = by_name[M.rust_name(n)]
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
        t1, _, _ = model(batch, keep[1])
    ov1 = meta["losses"][1]
    out.update({
        "loss1_torch": t1.item(), "loss1_ovbench": ov1["total"], "loss1_rel_diff": rel(t1.item(), ov1["total"]),
        "grad_norms_compared": len(grads),
        "grad_norm_max_rel_diff": grads[0][0] if grads else 0.0,
        "grad_norm_worst": grads[0][1] if grads else None,
    })
    if out["loss1_rel_diff"] > TOL_LOSS1:
        problems.append(f"step-1 loss: torch {t1.item():.7f}, ovbench {ov1['total']:.7f} "
                        f"(rel diff {out['loss1_rel_diff']:.2e} > {TOL_LOSS1})")
    if grads and grads[0][0] > TOL_GRAD:
        problems.append(f"gradient norm of {grads[0][1]}: torch {grads[0][2]:.6g}, ovbench {grads[0][3]:.6g} "
                        f"(rel diff {grads[0][0]:.2e} > {TOL_GRAD})")
    out["problems"] = problems
    out["same_function"] = not problems
    return out
