"""Which CPU kernels give other bits on another processor, and which library each one runs.

    python bench/bench_kernels.py                    # every variant below, one subprocess each: a table of hashes
    python bench/bench_kernels.py --libraries        # the MKL / oneDNN calls each operation makes (MKL_VERBOSE)
    python bench/bench_kernels.py --hashes           # this process's hashes only (set the environment first)

Each operation the miniature's generation and GRPO step run is computed on seeded inputs, with one thread, and
hashed. A *variant* changes one thing a processor decides: ATen's kernel family (`ATEN_CPU_CAPABILITY`), MKL's code
branch (`MKL_CBWR`), oneDNN's ISA (`ONEDNN_MAX_CPU_ISA`) or the thread count. An operation whose hash moves with MKL's
branch runs MKL code; on a non-Intel processor MKL honours only the AUTO and COMPATIBLE branches (the oneMKL
developer guide: "On non-Intel CPUs and on Intel CPUs that do not support Intel AVX2, [MKL_CBWR=AVX2] may cause
results to differ because the AUTO branch is used instead"), so such an operation differs by vendor unless MKL runs
its COMPATIBLE branch. ATen's kernels are the same compiled code on every x86 processor once the family is pinned.

The first rows repeat `../shared/miniature/kernel_probe.py` input for input, so their hashes compare with the ones
DESIGN.md records for an AMD EPYC.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

# (name, environment) of each variant; the first is what `pin_cpu_kernels()` sets, the reference of the table
VARIANTS = [
    ("avx2 + MKL COMPATIBLE (the pins)", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}),
    ("avx2 + MKL AVX2 (the old pins)", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}),
    ("avx2 + MKL AUTO", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AUTO"}),
    ("avx2 + MKL SSE4_2", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "SSE4_2"}),
    ("avx2 + MKL unset", {"ATEN_CPU_CAPABILITY": "avx2"}),
    ("avx512 + MKL COMPATIBLE", {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "COMPATIBLE"}),
    ("avx512 + MKL AVX2", {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX2"}),
    ("default (no SIMD) + MKL COMPATIBLE", {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}),
    ("pins + oneDNN AVX2", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"}),
    ("pins, 2 threads", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "PROBE_THREADS": "2"}),
    ("old pins, 2 threads", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "PROBE_THREADS": "2"}),
    ("nothing pinned", {}),
]
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "PROBE_THREADS", "MKL_VERBOSE", "ONEDNN_VERBOSE")


def _hash(t) -> str:
    return hashlib.sha256(t.detach().contiguous().float().numpy().tobytes()).hexdigest()[:12]


def operations() -> dict:
    """name -> a function computing the operation on seeded inputs (the same inputs in every process)."""
    import torch
    import torch.nn.functional as F

    ops = {}
    # --- kernel_probe.py, input for input (one generator, drawn in this order) --------------------------------
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x, w, b = r(8, 37, 64), r(256, 64), r(256)
    q, k, v = r(8, 4, 37, 16), r(8, 4, 37, 16), r(8, 4, 37, 16)
    bmm_a, bmm_b = r(8, 37, 64), r(8, 64, 37)
    soft_in, logsoft_in = r(8, 37, 1000), r(8, 37, 1000)
    sum_in = r(100_000)
    ce_in = r(296, 500)
    ce_target = torch.randint(0, 500, (296,), generator=g)
    multi_in = torch.softmax(r(64, 500), -1)
    # the next three draw from the generator itself: replay each from the state it had there
    states = {}
    for name, draw in (
        ("multinomial", lambda gen: torch.multinomial(multi_in, 4, generator=gen).float()),
        ("rand", lambda gen: torch.rand(1000, generator=gen)),
        ("embedding", lambda gen: (r(500, 64), torch.randint(0, 500, (8, 37), generator=gen))),
    ):
        states[name] = g.get_state()
        draw(g)

    def replay(name):
        return torch.Generator().set_state(states[name])

    def embedding_backward():
        gen = replay("embedding")
        e = torch.nn.Embedding(500, 64)
        e.weight.data = torch.randn(500, 64, generator=gen)
        e(torch.randint(0, 500, (8, 37), generator=gen)).pow(2).sum().backward()
        return e.weight.grad

    ops["mm 296x64 @ 64x256"] = lambda: x.reshape(-1, 64) @ w.T
    ops["linear with bias"] = lambda: F.linear(x, w, b)
    ops["bmm"] = lambda: torch.bmm(bmm_a, bmm_b)
    ops["softmax last dim"] = lambda: torch.softmax(soft_in, -1)
    ops["log_softmax"] = lambda: torch.log_softmax(logsoft_in, -1)
    ops["rmsnorm by hand"] = lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    ops["silu"] = lambda: F.silu(x)
    ops["exp"] = lambda: torch.exp(x)
    ops["sdpa causal"] = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ops["sum over 1e5"] = lambda: sum_in.sum().reshape(1)
    ops["cross entropy"] = lambda: F.cross_entropy(ce_in, ce_target).reshape(1)
    ops["multinomial (sampling)"] = lambda: torch.multinomial(multi_in, 4, generator=replay("multinomial")).float()
    ops["rand"] = lambda: torch.rand(1000, generator=replay("rand"))
    ops["embedding backward"] = embedding_backward

    def block():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.SiLU(), torch.nn.Linear(256, 64))
        (net(x) - x).pow(2).mean().backward()
        return net

    ops["backward: grad of layer 0"] = lambda: block()[0].weight.grad

    def adamw_after_backward():
        net = block()
        torch.optim.AdamW(net.parameters(), lr=1e-3).step()
        return net[2].weight

    ops["AdamW step: layer 2 weight"] = adamw_after_backward

    # --- the pieces of the two above, apart --------------------------------------------------------------------
    h = torch.Generator().manual_seed(10)
    s = lambda *shape: torch.randn(*shape, generator=h)  # noqa: E731
    act, weight, grad_out = s(296, 64), s(256, 64), s(296, 256)
    ops["linear backward: input grad (NN)"] = lambda: grad_out @ weight
    ops["linear backward: weight grad (TN)"] = lambda: grad_out.T @ act
    ops["silu backward"] = lambda: torch.ops.aten.silu_backward(grad_out, s(296, 256).mul(0) + grad_out.flip(0))
    params = [s(256, 64), s(64)]
    grads = [s(256, 64), s(64)]

    def adamw(**kw):
        def run():
            ps = [p.clone().requires_grad_(True) for p in params]
            for p, gr in zip(ps, grads, strict=True):
                p.grad = gr.clone()
            opt = torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, **kw)
            for _ in range(3):
                opt.step()
            return torch.cat([p.detach().reshape(-1) for p in ps])

        return run

    ops["AdamW alone, for-loop"] = adamw(foreach=False)
    ops["AdamW alone, foreach"] = adamw(foreach=True)
    ops["AdamW alone, fused (the trainer's)"] = adamw(fused=True)

    def clip():
        ps = [p.clone().requires_grad_(True) for p in params]
        for p, gr in zip(ps, grads, strict=True):
            p.grad = gr.clone()
        norm = torch.nn.utils.clip_grad_norm_(ps, 0.2)
        return torch.cat([norm.reshape(1)] + [p.grad.reshape(-1) for p in ps])

    ops["clip_grad_norm_"] = clip
    angles = s(64, 150).abs()
    ops["cos, sin (rotary)"] = lambda: torch.cat([angles.cos(), angles.sin()])
    ops["log, sqrt, tanh"] = lambda: torch.cat([angles.log(), angles.sqrt(), angles.tanh()])
    logits = s(64, 516)
    ops["logsumexp"] = lambda: logits.logsumexp(-1)
    ops["softmax / temperature 0.7"] = lambda: torch.softmax(logits / 0.7, -1)
    qq, kk, vv = s(64, 4, 60, 16), s(64, 4, 60, 16), s(64, 4, 60, 16)
    mask = torch.ones(64, 1, 60, 60, dtype=torch.bool).tril()
    mask[:8, :, :, :5] = False  # left padding on a few rows
    mask[:, :, torch.arange(60), torch.arange(60)] = True

    def sdpa(backend=None, backward=False):
        def run():
            from torch.nn.attention import sdpa_kernel

            qr = qq.clone().requires_grad_(backward)
            with sdpa_kernel([backend]) if backend else _nothing():
                out = F.scaled_dot_product_attention(qr, kk, vv, attn_mask=mask)
                if not backward:
                    return out
                out.pow(2).sum().backward()
            return qr.grad

        return run

    from torch.nn.attention import SDPBackend

    ops["sdpa with mask (default backend)"] = sdpa()
    ops["sdpa with mask, math backend"] = sdpa(SDPBackend.MATH)
    ops["sdpa with mask, backward"] = sdpa(backward=True)
    ops["eager attention: matmul, softmax, matmul"] = lambda: (
        torch.softmax((qq @ kk.transpose(-1, -2) / 4).masked_fill(~mask, float("-inf")), -1) @ vv
    )

    # --- the miniature's model as the trainer runs it ------------------------------------------------------------
    def tiny_qwen(attn: str):
        from transformers import Qwen2Config, Qwen2ForCausalLM

        config = Qwen2Config(
            vocab_size=516,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            tie_word_embeddings=True,
            attn_implementation=attn,
        )
        torch.manual_seed(0)
        return Qwen2ForCausalLM(config)

    ids = torch.randint(0, 516, (16, 120), generator=torch.Generator().manual_seed(5))

    def forward(attn):
        return lambda: tiny_qwen(attn)(input_ids=ids).logits

    def grpo_like_step():
        model = tiny_qwen("sdpa")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        for _ in range(2):
            logp = model(input_ids=ids).logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])
            ratio = torch.exp(logp - logp.detach())  # TRL's importance ratio
            (-(ratio.squeeze(-1) * torch.linspace(-1, 1, 16)[:, None]).sum() / 16).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.2)
            opt.step()
            opt.zero_grad()
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def sample():
        model = tiny_qwen("sdpa").eval()
        torch.manual_seed(6)
        with torch.no_grad():
            out = model.generate(
                ids[:8, :40],
                attention_mask=torch.ones(8, 40, dtype=torch.long),
                do_sample=True,
                temperature=0.7,
                top_k=0,
                top_p=1.0,
                max_new_tokens=24,
                pad_token_id=0,
            )
        return out

    ops["Qwen2 forward, sdpa"] = forward("sdpa")
    ops["Qwen2 forward, eager attention"] = forward("eager")
    ops["Qwen2: 2 GRPO-like steps (fused AdamW)"] = grpo_like_step
    ops["Qwen2: sampled generation (tokens)"] = sample
    return ops


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def hashes() -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("PROBE_THREADS", "1")))
    return {name: _hash(run()) for name, run in operations().items()}


def header() -> str:
    import torch

    from reson.core.machine import processor_name

    pins = " ".join(f"{k}={os.environ[k]}" for k in KNOBS if k in os.environ)
    return (
        f"{processor_name()} | torch {torch.__version__} | capability "
        f"{torch.backends.cpu.get_cpu_capability()} | {pins or 'nothing pinned'}"
    )


def _child(env: dict, *args: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in KNOBS}
    done = subprocess.run(
        [sys.executable, __file__, *args], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout


def libraries() -> None:
    """For each operation, the MKL BLAS and oneDNN calls it makes (one subprocess each, verbose on).

    MKL_VERBOSE traces BLAS and LAPACK, not MKL's vector maths (VM), which ATen calls for exp, log, sqrt, tanh, ...
    (`aten/src/ATen/cpu/vml.h`): an operation listed with no call whose hash still moves with `MKL_CBWR` runs VM.
    """
    names = list(json.loads(_child(dict(VARIANTS[0][1]), "--names")))
    for name in names:
        out = _child({**VARIANTS[0][1], "MKL_VERBOSE": "1", "ONEDNN_VERBOSE": "1"}, "--only", name)
        calls = {}
        for line in out.split("---start", 1)[-1].splitlines():
            if line.startswith("MKL_VERBOSE") and "oneMKL" not in line:
                call = line.split()[1].split("(")[0]
            elif line.startswith("onednn_verbose") and ",primitive,exec," in line:
                call = "oneDNN " + line.split(",")[5]  # onednn_verbose,v1,primitive,exec,cpu,<primitive>,...
            else:
                continue
            calls[call] = calls.get(call, 0) + 1
        listed = ", ".join(f"{c} x{n}" for c, n in calls.items()) or "no MKL BLAS or oneDNN call"
        print(f"| {name} | {listed} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", action="store_true", help="print this process's hashes as JSON")
    parser.add_argument("--libraries", action="store_true", help="list the library calls of each operation")
    parser.add_argument("--names", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write {variant: {operation: hash}} to this file")
    args = parser.parse_args()
    if args.names:
        print(json.dumps(list(operations())))
    elif args.only:
        run = operations()[args.only]
        print("---start", flush=True)
        run()
    elif args.hashes:
        print(json.dumps({"header": header(), "hashes": hashes()}))
    elif args.libraries:
        libraries()
    else:
        table = {}
        for label, env in VARIANTS:
            result = json.loads(_child(env, "--hashes"))
            table[label] = result["hashes"]
            print(f"# {label}: {result['header']}", file=sys.stderr, flush=True)
        base = VARIANTS[0][0]
        labels = [label for label, _ in VARIANTS]
        print(f"| operation | {base} | " + " | ".join(labels[1:]) + " |")
        print("|---|---|" + "---|" * (len(labels) - 1))
        for name, reference in table[base].items():
            cells = ["=" if table[label][name] == reference else table[label][name][:6] for label in labels[1:]]
            print(f"| {name} | {reference} | " + " | ".join(cells) + " |")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(table, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
