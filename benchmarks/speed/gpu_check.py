"""GPU check: promptembed's forward path vs the plain reference on 7B-shaped models, bf16.

For a lent GPU session (one H200: finishes in well under 5 minutes). Builds random-weight
models of LLaMA-2-7B shape and Mistral-7B shape directly on the GPU in bf16 (no
download), feeds synthetic token ids (a constant ``ke``-sized prefix, random text of
STS length 30-60 tokens or document length 256-512, a constant suffix) and measures
prompt tokens/s of:

* ``promptembed``: :class:`promptembed.engine.forward.LayerForward` (early exit after the pooled
  layer, layer -2 as for ``ke``), token-budget batches, with the prefix KV cache reused;
* ``promptembed_no_prefix``: the same without prefix reuse;
* ``reference``: ``AutoModelForCausalLM`` full forward with ``output_hidden_states=True``,
  left padding, batches of 16 in input order, ``hidden_states[-2][:, -1]``.

Also: the measured bf16 matmul TFLOP/s, each variant's fraction of the roofline (the
minimal FLOPs per prompt over that rate), peak GPU memory, and the cosine of
promptembed's vectors with the reference's (one unpadded prompt at a time) on a few
inputs. Prints JSON. ``--smoke`` runs tiny shapes in float32 on the CPU.

Example (from the repository root):
    python -m benchmarks.speed.gpu_check --out benchmarks/speed/results/gpu-h200.json
    python -m benchmarks.speed.gpu_check --smoke

"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import flops_per_prompt
from promptembed.engine.batching import plan_batches
from promptembed.engine.forward import LayerForward, resolve_layer

LAYER = -2  # as the ke template
REF_BATCH = 16
PREFIX_LEN, SUFFIX_LEN = 40, 7  # ke: about 40 constant tokens before the text, 7 after

SHAPES: dict[str, dict[str, Any]] = {
    "llama-2-7b": {
        "arch": "llama",
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "intermediate_size": 11008,
        "vocab_size": 32000,
    },
    "mistral-7b": {
        "arch": "mistral",
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 32000,
    },
}
SMOKE = {
    "arch": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 1000,
}


def sync(device: torch.device) -> None:
    """Wait for queued GPU work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, seconds: float) -> float:
    """Measured dense matmul rate (TFLOP/s) for square ``size`` matrices."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            a @ b
        reps += 10
        sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - t0) / 1e12


def build(shape: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    """A random-weight causal LM, created directly on ``device`` in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    fields = {k: v for k, v in shape.items() if k != "arch"}
    if shape["arch"] == "mistral":
        config, cls = MistralConfig(**fields, sliding_window=None), MistralForCausalLM
    else:
        config, cls = LlamaConfig(**fields), LlamaForCausalLM
    config.pad_token_id = 0
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = cls(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def make_prompts(n: int, lo: int, hi: int, vocab: int, seed: int) -> list[list[int]]:
    """``n`` prompts: BOS + a constant prefix + random text of lo..hi tokens + a suffix."""
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(3, vocab, (PREFIX_LEN,), generator=g).tolist()
    suffix = torch.randint(3, vocab, (SUFFIX_LEN,), generator=g).tolist()
    out = []
    for _ in range(n):
        size = int(torch.randint(lo, hi + 1, (1,), generator=g))
        out.append([1, *prefix, *torch.randint(3, vocab, (size,), generator=g).tolist(), *suffix])
    return out


def run_promptembed(
    fwd: LayerForward, prompts: list[list[int]], *, reuse: bool, budget: tuple[int, int]
) -> torch.Tensor:
    """Embed like PromptEmbedder does: sort, pack by token budget, one host copy per batch."""
    skip = len(fwd.prefix.ids) if (reuse and fwd.prefix is not None) else 0
    out = torch.empty(len(prompts), fwd.model.config.hidden_size)
    for batch in plan_batches([len(p) - skip for p in prompts], *budget):
        out[batch] = fwd([prompts[i] for i in batch], with_prefix=bool(skip)).cpu()
    return out


@torch.inference_mode()
def run_reference(model: Any, prompts: list[list[int]]) -> torch.Tensor:
    """The paper's computation: left padding, batches of 16 in input order, all states."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), REF_BATCH):
        rows = prompts[i : i + REF_BATCH]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, width - len(r) :] = torch.tensor(r)
            mask[j, width - len(r) :] = 1
        states = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True
        ).hidden_states
        out.append(states[LAYER][:, -1].float().cpu())
    return torch.cat(out)


@torch.inference_mode()
def reference_single(model: Any, prompt: list[int]) -> torch.Tensor:
    """One unpadded prompt through the full model: ``hidden_states[layer][0, -1]``."""
    device = next(model.parameters()).device
    states = model(input_ids=torch.tensor([prompt], device=device), output_hidden_states=True)
    return states.hidden_states[LAYER][0, -1].float().cpu()


def timed(device: torch.device, fn: Any) -> tuple[Any, float, float]:
    """Run ``fn``; return its result, seconds and peak GPU memory (GiB; 0 on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    result = fn()
    sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return result, seconds, peak


def check_model(
    name: str,
    shape: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    args: Any,
    rate: float,
) -> dict[str, Any]:
    """All workloads and variants for one model shape."""
    t0 = time.perf_counter()
    model = build(shape, device, dtype)
    build_s = time.perf_counter() - t0
    fwd = LayerForward(model.model, LAYER, "last", pad_id=0)
    blocks = resolve_layer(LAYER, model.config.num_hidden_layers)
    workloads = {"sts": (args.n_sts, 30, 60), "docs": (args.n_docs, 256, 512)}
    if args.smoke:
        workloads = {"sts": (24, 30, 60), "docs": (6, 256, 512)}
    result: dict[str, Any] = {"build_s": build_s, "workloads": {}}
    for wname, (n, lo, hi) in workloads.items():
        prompts = make_prompts(n, lo, hi, shape["vocab_size"], seed=len(wname))
        fwd.set_prefix(prompts[0][: 1 + PREFIX_LEN])
        tokens = sum(len(p) for p in prompts)
        minimal = sum(
            flops_per_prompt(model.config, blocks, len(p), 1 + PREFIX_LEN, False) for p in prompts
        )
        rows: dict[str, Any] = {}
        vectors: dict[str, torch.Tensor] = {}
        budget = (args.max_batch_tokens, args.max_items)
        variants = {
            "promptembed": partial(run_promptembed, fwd, reuse=True, budget=budget),
            "promptembed_no_prefix": partial(run_promptembed, fwd, reuse=False, budget=budget),
            "reference": partial(run_reference, model),
        }
        for vname, fn in variants.items():
            if not args.smoke:  # warm-up on a slice: kernels, allocator
                fn(prompts[: min(32, len(prompts))])
            vec, seconds, peak = timed(device, partial(fn, prompts))
            vectors[vname] = vec
            rows[vname] = {
                "seconds": seconds,
                "prompts_per_s": n / seconds,
                "tokens_per_s": tokens / seconds,
                "peak_gpu_gib": peak,
                # Minimal work (layers needed, prefix reused) at the measured matmul rate.
                "fraction_of_roofline": minimal / seconds / (rate * 1e12),
            }
        ref = vectors["reference"]
        for vname, row in rows.items():
            row["speedup_vs_reference"] = rows["reference"]["seconds"] / row["seconds"]
            cos = torch.nn.functional.cosine_similarity(vectors[vname], ref, dim=-1)
            row["cosine_vs_batched_reference_min"] = float(cos.min())
        k = min(args.n_check, n)
        single = torch.stack([reference_single(model, p) for p in prompts[:k]])
        agree = {
            v: float(torch.nn.functional.cosine_similarity(vectors[v][:k], single, dim=-1).min())
            for v in vectors
        }
        result["workloads"][wname] = {
            "n": n,
            "tokens_per_prompt": tokens / n,
            "gflop_per_prompt_minimal": minimal / n / 1e9,
            "variants": rows,
            "cosine_vs_unpadded_reference_min": agree,
        }
    return result


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny shapes, float32, on the CPU")
    p.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--n-sts", type=int, default=512, help="STS-length prompts per model")
    p.add_argument("--n-docs", type=int, default=128, help="document-length prompts per model")
    p.add_argument("--n-check", type=int, default=8, help="prompts checked one by one")
    p.add_argument("--max-batch-tokens", type=int, default=16384, help="promptembed's budget")
    p.add_argument("--max-items", type=int, default=64, help="promptembed's max batch size")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args()
    if args.smoke:
        device, dtype = torch.device("cpu"), torch.float32
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --smoke on a CPU")
        device, dtype = torch.device("cuda"), torch.bfloat16
        torch.backends.cuda.matmul.allow_tf32 = True
    t0 = time.perf_counter()
    rate = matmul_tflops(device, dtype, 256 if args.smoke else 8192, 0.5 if args.smoke else 3.0)
    shapes = {"smoke-llama": SMOKE} if args.smoke else {m: SHAPES[m] for m in args.models}
    res: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "matmul_tflops": rate,
        "models": {},
    }
    for name, shape in shapes.items():
        res["models"][name] = check_model(name, shape, device, dtype, args, rate)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the previous model is gone: free its memory
    res["total_s"] = time.perf_counter() - t0
    # bf16 on random weights: batched vs unpadded differ by rounding only.
    floor = 0.9999 if dtype == torch.float32 else 0.99
    res["correct"] = all(
        c >= floor
        for m in res["models"].values()
        for w in m["workloads"].values()
        for c in w["cosine_vs_unpadded_reference_min"].values()
    )
    text = json.dumps(res, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
