"""Optional imports: `import promptembed` pulls in no framework, a missing extra is named."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import run_python


@pytest.mark.procs
def test_import_pulls_in_no_framework():
    code = (
        "import sys, promptembed; "
        "bad = [m for m in ('torch', 'transformers', 'numpy', 'scipy', 'chromadb', "
        "'langchain_core', 'llama_index', 'mteb') if m in sys.modules]; print(bad)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.procs
def test_the_cli_loads_no_model_stack_until_a_command_runs():
    # `promptembed --help` and argument errors answer at once, not after importing torch.
    code = (
        "import sys; from promptembed.cli import app; "
        "print([m for m in ('torch', 'transformers', 'chromadb', 'fastapi') if m in sys.modules])"
    )
    assert run_python(code).stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.procs
def test_import_is_light_and_missing_extras_are_named():
    code = """
import sys, json
import promptembed
heavy = sorted({m.split(".")[0] for m in sys.modules
                if m.split(".")[0] in ("chromadb", "langchain_core", "llama_index", "torch")})
errors = {}
for module, blocked in [("promptembed.chroma", "chromadb"),
                        ("promptembed.langchain", "langchain_core"),
                        ("promptembed.llama_index", "llama_index")]:
    sys.modules[blocked] = None
    try:
        __import__(module)
    except ImportError as e:
        errors[module] = str(e)
    del sys.modules[blocked]
print(json.dumps({"heavy": heavy, "errors": errors}))
"""
    out = json.loads(run_python(code).stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert "pip install 'promptembed[chroma]'" in out["errors"]["promptembed.chroma"]
    assert "pip install 'promptembed[langchain]'" in out["errors"]["promptembed.langchain"]
    assert "pip install 'promptembed[llama-index]'" in out["errors"]["promptembed.llama_index"]
