#!/usr/bin/env python3
"""ovbench's torch engine: the training step of OpenVision and OpenVision 2 in PyTorch, driven
by the harness (`ovbench step --engine torch`) through the line protocol of docs/engines.md.

The harness writes the configuration (JSON) to a file named by OVBENCH_ENGINE_CONFIG and reads
one JSON object per line from this process's standard output (under torchrun, from every
rank; each line says its rank). Everything else the process prints goes to standard error.

  engine.py                      run the configuration (mode "run": time the steps; mode
                                 "check": the same-function check against an ovbench export)
  engine.py --peak [--out F]     bf16 and f32 matmul peak of GPU 0 (scripts/gpu-run.sh)
  engine.py --selftest           a tiny CPU run of both recipes, no harness needed

Several processes: the harness starts `python -m torch.distributed.run --standalone
--nproc-per-node N engine.py`; each rank takes its rows of the global batch, DDP all-reduces
gradients (NCCL on GPUs, gloo on the CPU), OpenVision's contrastive loss all-gathers features.
"""
import fcntl
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings

warnings.filterwarnings("ignore", message=".*NumPy.*")
warnings.filterwarnings("ignore", message=".*numpy.*")

PROTOCOL = 1


class Proto:
    """The protocol stream: this process's original standard output, one line per write(2)
    under a lock shared by the ranks, so that lines from several ranks never mix. Standard
    output itself is pointed at standard error, so stray prints cannot break the protocol."""

    def __init__(self, rank, lock_path):
        self.rank = rank
        self.fd = os.dup(1)
        os.dup2(2, 1)
        self.lock = open(lock_path, "a") if lock_path else None

    def send(self, kind, **fields):
        obj = {"type": kind, "rank": self.rank, **fields}
        line = (json.dumps(_finite(obj), allow_nan=False, default=str) + "\n").encode()
        if self.lock:
            fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self.fd, view):]
        finally:
            if self.lock:
                fcntl.flock(self.lock, fcntl.LOCK_UN)


def _finite(v):
    """Non-finite floats become null (the harness then names the field)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def versions(torch, dev):
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": None, "nccl": None}
    try:
        out["cudnn"] = torch.backends.cudnn.version()
    except Exception:
        pass
    if dev.type == "cuda":
        try:
            out["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        except Exception:
            pass
    return out


def rss():
    """(VmHWM, VmRSS) of this process in bytes, or (None, None)."""
    try:
        hwm = cur = None
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
            elif line.startswith("VmRSS:"):
                cur = int(line.split()[1]) * 1024
        return hwm, cur
    except OSError:
        return None, None


def reset_rss_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Peaks:
    """Peaks of consecutive regions and the largest of them (as the candle engine's marks):
    the CUDA caching allocator's on GPUs, the kernel's RSS high-water mark on the CPU."""

    def __init__(self, torch, dev):
        self.torch, self.cuda = torch, dev.type == "cuda"
        self.max = 0
        self.reserved_max = 0

    def fold(self):
        t = self.torch
        if self.cuda:
            p = t.cuda.max_memory_allocated()
            self.reserved_max = max(self.reserved_max, t.cuda.max_memory_reserved())
            t.cuda.reset_peak_memory_stats()
        else:
            p = rss()[0] or 0
            reset_rss_peak()
        self.max = max(self.max, p)
        return p


def not_honoured(ex, dev, compile_):
    """Fields of the execution this engine cannot honour, and what it ran instead."""
    out = []
    for name, m in ex.get("modules", {}).items():
        if m.get("params", "f32") != "f32":
            out.append(f"modules.{name}.params = {m['params']}: not honoured; master weights stay f32")
    if compile_:
        out.append("torch.compile: the compiled program's partitioner chooses what the backward "
                   "pass saves, so attention_probs and loss_buffers describe the eager program")
    if dev.type == "cpu" and ex.get("attention_probs") == "recompute":
        out.append("attention_probs = recompute on the CPU: SDPA picks its CPU kernel, which may "
                   "be the math kernel (probabilities kept)")
    return out


def run(cfg, proto, rank, world, local):
    import torch
    import torch.distributed as dist
    from ovbench_torch import model as M
    from ovbench_torch import optim as O
    from ovbench_torch.io import load_inputs, load_weights

    want = cfg["device"]
    if want.startswith("cuda"):
        base = int(want.split(":")[1]) if ":" in want else 0
        dev = torch.device("cuda", base + local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    backend = None if world == 1 else ("nccl" if dev.type == "cuda" else "gloo")
    ex = cfg["execution"]
    notes = not_honoured(ex, dev, cfg.get("compile"))
    # Hello first: the harness samples this pid's GPU memory from now on.
    proto.send("hello", protocol=PROTOCOL, pid=os.getpid(), world_size=world, local_rank=local,
               engine={"name": "torch", "versions": versions(torch, dev), "executable": sys.executable,
                       "device": str(dev),
                       "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
                       "threads": torch.get_num_threads(), "backend": backend,
                       "compile": bool(cfg.get("compile"))})
    if world > 1:
        dist.init_process_group(backend, device_id=dev if dev.type == "cuda" else None)
    cuda = dev.type == "cuda"
    if cuda and cfg.get("mem_cap_bytes"):
        total = torch.cuda.get_device_properties(dev).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cfg["mem_cap_bytes"] / total), dev)
    # Baselines before the model and the batch exist, as the candle engine takes its own.
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        baseline = torch.cuda.memory_allocated(dev)
    reset_rss_peak()
    rss_baseline = rss()[1]
    if not cuda:
        baseline = rss_baseline or 0
    peaks = Peaks(torch, dev)

    torch.manual_seed(cfg["seed"])
    recipe = cfg["recipe"]
    net = M.Model(cfg["model_config"], recipe, ex, rank, world)
    if cfg.get("weights"):
        load_weights(net, cfg["weights"])
    net = net.to(dev)
    net.set_device_type(dev.type)
    batch_all, keep_all = load_inputs(cfg["inputs"])
    b = cfg["batch"]
    rows = slice(rank * b, (rank + 1) * b)
    if batch_all["images"].shape[0] != b * world:
        raise ValueError(f"inputs hold {batch_all['images'].shape[0]} rows; {world} rank(s) x batch {b} expected")
    weights_key = "v1_weights" if recipe == "ov1" else "v2_weights"
    net.caption_count = batch_all[weights_key].sum().to(dev)
    data = {k: v[rows].to(dev) for k, v in batch_all.items()}
    keep = {k: v[rows].to(dev) for k, v in keep_all.items()}
    del batch_all, keep_all
    opt = O.build(net, ex["optimizer"], cfg["lr"])
    ddp = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ddp = DDP(net, device_ids=[dev.index] if cuda else None)
    fwd = torch.compile(ddp) if cfg.get("compile") else ddp
    params = list(net.named_parameters())
    by_module = {}
    for n, p in params:
        m = M.module_of(n)
        by_module[m] = by_module.get(m, 0) + p.numel()
    params_bytes = sum(p.numel() * p.element_size() for _, p in params)
    proto.send("setup", params_total=sum(p.numel() for _, p in params), params_by_module=by_module,
               params_bytes=params_bytes, trainable=sum(p.numel() for _, p in params if p.requires_grad),
               optimizer=type(opt).__name__, not_honoured=notes)

    from contextlib import nullcontext
    grads_bytes = None
    forward_peak = 0
    step = 0
    order = cfg["protocol"]["phase_order"]
    counts = cfg["protocol"]["phases"]
    for phase in order:
        for _ in range(counts[phase]):
            k = keep.get(step)
            if recipe == "ov2" and k is None:
                raise ValueError(f"inputs have no keep_step{step}")
            sync_ctx = ddp.no_sync() if phase == "no_sync" and world > 1 else nullcontext()
            peaks.fold()
            with sync_ctx:
                if cuda:
                    ev = [torch.cuda.Event(enable_timing=True) for _ in range(5)]
                    torch.cuda.synchronize(dev)
                    ev[0].record()
                else:
                    t0 = time.perf_counter()
                total, cap, con = fwd(data, k)
                if cuda:
                    ev[1].record()
                else:
                    t1 = time.perf_counter()
                # Read outside the timed parts, as ovbench reads it.
                values = [total.item(), cap.item(), None if con is None else con.item()]
                forward_peak = max(forward_peak, peaks.fold())
                if cuda:
                    ev[2].record()
                else:
                    t2 = time.perf_counter()
                total.backward()
                if cuda:
                    ev[3].record()
                else:
                    t3 = time.perf_counter()
            if grads_bytes is None:
                grads_bytes = sum(p.grad.numel() * p.grad.element_size() for _, p in params if p.grad is not None)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if cuda:
                ev[4].record()
                torch.cuda.synchronize(dev)
                f, bw, o = ev[0].elapsed_time(ev[1]) / 1e3, ev[2].elapsed_time(ev[3]) / 1e3, ev[3].elapsed_time(ev[4]) / 1e3
            else:
                t4 = time.perf_counter()
                f, bw, o = t1 - t0, t3 - t2, t4 - t3
            del total, cap, con
            step_peak = peaks.fold()
            sample = {"phase": phase, "step": step, "forward_s": f, "backward_s": bw, "optimizer_s": o,
                      "total_s": f + bw + o, "loss": values[0], "caption_loss": values[1],
                      "contrastive_loss": values[2], "peak_bytes": step_peak}
            if world > 1:
                # The global batch's losses: the mean over ranks (each rank's caption term is
                # already scaled so that this mean is the global weighted mean).
                t = torch.tensor([values[0], values[1], values[2] or 0.0], dtype=torch.float64,
                                 device=dev if cuda else "cpu")
                dist.all_reduce(t)
                g = (t / world).tolist()
                sample.update(global_loss=g[0], global_caption_loss=g[1],
                              global_contrastive_loss=None if values[2] is None else g[2])
            proto.send("sample", **sample)
            step += 1
    peaks.fold()
    hwm = rss()[0]
    memory = {
        "view": "cuda_caching_allocator" if cuda else "process_rss",
        "baseline_bytes": baseline,
        "peak_bytes": peaks.max,
        "peak_over_baseline_bytes": max(0, peaks.max - baseline),
        "forward_peak_over_baseline_bytes": max(0, forward_peak - baseline),
        "reserved_peak_bytes": peaks.reserved_max if cuda else None,
        "params_bytes": params_bytes,
        "grads_bytes": grads_bytes or 0,
        "optimizer_bytes": O.state_bytes(opt),
        "rss_baseline_bytes": rss_baseline,
        "rss_peak_bytes": hwm,
    }
    proto.send("summary", memory=memory)
    proto.send("done")
    if world > 1:
        dist.destroy_process_group()


def check(cfg, proto):
    import torch
    from ovbench_torch.check import same_function

    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    proto.send("hello", protocol=PROTOCOL, pid=os.getpid(),
               engine={"name": "torch", "versions": versions(torch, torch.device("cpu")),
                       "executable": sys.executable, "device": "cpu", "threads": torch.get_num_threads()})
    res = same_function(cfg["export_dir"], cfg["recipe"], cfg["execution"])
    proto.send("result", **res)
    proto.send("done")


def peak(out):
    import torch

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
    text = json.dumps(res)
    if out:
        with open(out, "w") as f:
            f.write(text)
    print(text)


def selftest():
    """A tiny CPU run of both recipes under several executions (no harness needed): every
    loss finite; recomputation and SDPA's kernels change no loss or gradient beyond rounding;
    the moment-dtype AdamW with f32 moments takes torch.optim.AdamW's step."""
    import copy

    import torch
    from ovbench_torch import model as M
    from ovbench_torch import optim as O

    d = {"width": 64, "depth": 2, "heads": 2, "mlp_dim": 128}
    mc = {"vision": d, "text_encoder": {"dims": d}, "v1_decoder": {"dims": d}, "v2_decoder": {"dims": d},
          "model": {"patch": 16}, "resolution": 32, "keep_ratio": 0.5}
    g = torch.Generator().manual_seed(0)
    batch = {"images": torch.randn(2, 3, 32, 32, generator=g),
             "alt_text": torch.randint(1, 30000, (2, 80), generator=g),
             "sentence": torch.randint(1, 30000, (2, 80), generator=g),
             "v2_input": torch.randint(1, 30000, (2, 127), generator=g),
             "v2_targets": torch.randint(1, 30000, (2, 127), generator=g), "v2_weights": torch.ones(2, 127),
             "v1_targets": torch.randint(1, 30000, (2, 128), generator=g), "v1_weights": torch.ones(2, 128)}
    keep = torch.stack([torch.randperm(4, generator=g)[:2] for _ in range(2)])

    def variant(**kw):
        ex = copy.deepcopy(M.DEFAULT_EXECUTION)
        for m in ex["modules"].values():
            m["recompute"] = kw.get("recompute", False)
            m["compute"] = kw.get("compute", "f32")
        ex["attention_probs"] = kw.get("attention", "keep")
        ex["loss_buffers"] = kw.get("loss", "materialized")
        ex["optimizer"].update(kw.get("optimizer", {}))
        return ex

    def loss_and_grads(recipe, ex):
        torch.manual_seed(0)
        net = M.Model(mc, recipe, ex)
        total, _, _ = net(batch, keep)
        total.backward()
        return total.item(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    for r in ("ov1", "ov2"):
        base, gb = loss_and_grads(r, variant())
        for name, ex in (("recompute", variant(recompute=True)), ("sdpa-recompute", variant(attention="recompute")),
                         ("fused-loss", variant(loss="fused"))):
            l, gr = loss_and_grads(r, ex)
            assert abs(l - base) <= 1e-5 * abs(base), (r, name, l, base)
            worst = max((gr[n] - gb[n]).norm().item() / max(gb[n].norm().item(), 1e-12) for n in gb)
            assert worst <= 1e-4, (r, name, worst)
        for name, ex in (("bf16", variant(compute="bf16", recompute=True)),
                         ("bf16-moments", variant(optimizer={"mu": "bf16", "decay_set": "kernels"}))):
            torch.manual_seed(0)
            net = M.Model(mc, r, ex)
            opt = O.build(net, ex["optimizer"], 1e-3)
            losses = []
            for _ in range(2):
                total, _, _ = net(batch, keep)
                total.backward()
                opt.step()
                opt.zero_grad()
                losses.append(total.item())
            assert all(math.isfinite(x) for x in losses), (r, name, losses)
            assert abs(losses[0] - base) <= 0.05 * abs(base), (r, name, losses, base)
        print(r, "ok", base)
    # The moment-dtype AdamW in f32 is torch's AdamW.
    torch.manual_seed(0)
    a = M.Model(mc, "ov2")
    b = copy.deepcopy(a)
    oa = O.build(a, M.DEFAULT_EXECUTION["optimizer"], 1e-3)
    ob = O.build(b, M.DEFAULT_EXECUTION["optimizer"], 1e-3, own=True)
    assert type(oa) is not type(ob)
    for _ in range(3):
        for net, opt in ((a, oa), (b, ob)):
            total, _, _ = net(batch, keep)
            total.backward()
            opt.step()
            opt.zero_grad()
    worst = max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))
    assert worst <= 1e-5, worst
    print("adamw ok", worst)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--peak"]:
        peak(args[2] if args[1:2] == ["--out"] else None)
        return 0
    if args[:1] == ["--selftest"]:
        selftest()
        return 0
    if args:
        print(__doc__, file=sys.stderr)
        return 2
    path = os.environ.get("OVBENCH_ENGINE_CONFIG")
    if not path:
        print("engine.py: OVBENCH_ENGINE_CONFIG is not set (the harness sets it; see docs/engines.md)", file=sys.stderr)
        return 2
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    proto = Proto(rank, path + ".lock")
    try:
        with open(path) as f:
            cfg = json.load(f)
        if cfg["protocol"]["world_size"] != world:
            raise ValueError(f"the harness expects {cfg['protocol']['world_size']} rank(s); this is one of {world}")
        if cfg.get("mode", "run") == "check":
            check(cfg, proto)
        else:
            run(cfg, proto, rank, world, local)
    except Exception as e:  # reported through the protocol, with the traceback on stderr
        traceback.print_exc()
        name = type(e).__name__
        if name == "OutOfMemoryError" or "out of memory" in str(e).lower():
            proto.send("oom", error=f"{name}: {str(e).splitlines()[0] if str(e) else ''}")
        else:
            proto.send("error", error=f"{name}: {e}")
        sys.stderr.flush()
        # Skip interpreter teardown: other ranks may be stuck in a collective.
        os._exit(3)
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
