"""The OpenAPI document is the contract: schemathesis with every check, a long run.

Starts ``promptembed serve`` (a real uvicorn process on 127.0.0.1, an API key, the
limits below) and runs ``schemathesis run --checks all`` on its ``/openapi.json``: every
phase (examples, coverage, fuzzing, stateful), positive and negative data. Prints the
number of generated cases and failures as JSON; exits non-zero if any check failed. The
test suite runs the same thing with ``--max-examples 10``.

By default the model is a tiny random Llama (:func:`benchmarks.common.build_tiny_llama`,
as in ``benchmarks/speed/bench_memory.py``): what is tested is the HTTP contract, not the
vectors. ``--model smollm2-135m`` serves a real one.

Example (from the repository root):
    python -m benchmarks.probes.schema_fuzz --max-examples 500 --seed 11

"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import build_tiny_llama, free_port

KEY = "schema-fuzz-key"


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early ({proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"server did not answer {url} in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Alias or path (default: a tiny Llama).")
    parser.add_argument("--max-examples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    exe = shutil.which("schemathesis") or sys.exit("pip install schemathesis")
    with tempfile.TemporaryDirectory(prefix="pe-schema-") as tmp:
        model = args.model
        if model is None:
            model = str(Path(tmp) / "tiny")
            build_tiny_llama(Path(model))
        port = free_port()
        toml = Path(tmp) / "serve.toml"
        toml.write_text(
            f'[embedder]\nmodel = "{model}"\ndevice = "cpu"\n'
            f'[server]\nport = {port}\napi_key_env = "PE_FUZZ_KEY"\nlog_level = "warning"\n'
            "max_inputs_per_request = 16\nmax_chars_per_input = 500\n"
            "max_request_bytes = 262144\n"
        )
        env = {**os.environ, "PE_FUZZ_KEY": KEY, "NO_PROXY": "127.0.0.1"}
        cli = "from promptembed.cli import app; app()"
        serve = [sys.executable, "-c", cli, "serve", "--config", str(toml)]
        proc = subprocess.Popen(serve, env=env, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/health", proc)
            start = time.perf_counter()
            run = subprocess.run(
                [
                    exe, "run", f"{base}/openapi.json", "--checks", "all",
                    "--max-examples", str(args.max_examples), "--seed", str(args.seed),
                    "--workers", "1", "--request-timeout", "30",
                    "--generation-database", "none", "--no-color",
                    "--header", f"Authorization: Bearer {KEY}",
                ],
                capture_output=True, text=True, cwd=tmp, env=env, check=False,
            )  # fmt: skip
            seconds = time.perf_counter() - start
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    summary = run.stdout.split("SUMMARY")[-1]
    cases = re.search(r"(\d+) generated", summary)
    failed = re.search(r"(\d+) failed", summary)
    print(
        json.dumps(
            {
                "checks": "all",
                "max_examples": args.max_examples,
                "seed": args.seed,
                "model": args.model or "tiny random Llama",
                "cases": int(cases.group(1)) if cases else None,
                "failed": int(failed.group(1)) if failed else 0,
                "schemathesis_exit": run.returncode,
                "seconds": round(seconds, 1),
            }
        )
    )
    if run.returncode != 0:
        print(run.stdout[-6000:], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
