"""Calibration (centering, whitening): the math, files, checks and its place in the identity."""

from __future__ import annotations

import numpy as np
import pytest

from promptembed import PromptEmbedder
from promptembed.engine.calibration import Calibration, fit_fields
from promptembed.identity import of_config

TEXTS = ["A man is playing a guitar.", "A child rides a horse", "一个孩子在骑马。", ""]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# -- calibration --------------------------------------------------------------------------


def test_center_fit_apply_math():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) + np.array([9, 0, 0, 0, 0, 0])
    cal = Calibration.fit(x, method="center")
    out = cal.apply(x)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    assert cal.dimension == 6 and cal.projection is None


def test_whiten_gives_identity_covariance_on_the_sample():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    cal = Calibration.fit(x, method="whiten", dims=3)
    cov = np.cov(cal.apply(x).T)
    np.testing.assert_allclose(cov, np.eye(3), atol=1e-3)


def test_fit_rejects_bad_dims():
    with pytest.raises(ValueError, match=r"dims must be in 1\.\.4"):
        Calibration.fit(np.ones((5, 8)) + np.eye(5, 8), dims=9)


def fitted(emb: PromptEmbedder, tmp_path, **kw):
    sample = [
        f"sample sentence number {i} about {w}"
        for i, w in enumerate(["cats", "dogs", "music", "stocks", "rain", "chess"] * 4)
    ]
    cal = Calibration.fit(emb.embed_raw(sample), fitted_on=fit_fields(emb.config), **kw)
    return cal.save(tmp_path)


def test_calibration_round_trip_same_vectors(model_dirs, tmp_path):
    path = str(model_dirs["llama"])
    base = PromptEmbedder(path, device="cpu", template="eol")
    file = fitted(base, tmp_path, method="whiten", dims=8)
    assert file.name.startswith("calibration-") and file.suffix == ".npz"
    calibrated = PromptEmbedder(path, device="cpu", template="eol", calibration=str(file))
    assert calibrated.dimension == 8
    loaded = Calibration.load(file)
    expected = unit(loaded.apply(base.embed_raw(TEXTS)))
    np.testing.assert_allclose(calibrated.embed(TEXTS), expected, atol=1e-5)
    # A second process-equivalent load gives the same vectors.
    again = PromptEmbedder(path, device="cpu", template="eol", calibration=str(file))
    np.testing.assert_allclose(again.embed(TEXTS), calibrated.embed(TEXTS), atol=1e-6)


def test_calibration_applies_to_queries_too(model_dirs, tmp_path):
    path = str(model_dirs["llama"])
    base = PromptEmbedder(path, device="cpu", template="eol", query_template="sum")
    file = fitted(base, tmp_path)
    emb = PromptEmbedder(
        path, device="cpu", template="eol", query_template="sum", calibration=str(file)
    )
    cal = Calibration.load(file)
    raw_q = base.embed_raw(["where is it"], kind="query")
    np.testing.assert_allclose(emb.embed_query("where is it"), unit(cal.apply(raw_q))[0], atol=1e-5)


def test_calibration_from_another_embedder_is_refused(model_dirs, tmp_path):
    path = str(model_dirs["llama"])
    file = fitted(PromptEmbedder(path, device="cpu", template="eol"), tmp_path)
    with pytest.raises(ValueError, match="template: fitted 'eol', configured 'ke'"):
        PromptEmbedder(path, device="cpu", template="ke", calibration=str(file))


def test_tampered_calibration_file_is_refused(model_dirs, tmp_path):
    file = fitted(PromptEmbedder(str(model_dirs["llama"]), device="cpu", template="eol"), tmp_path)
    file.write_bytes(file.read_bytes()[:-3] + b"xyz")
    with pytest.raises(ValueError, match="does not match its content hash"):
        Calibration.load(file)


def test_calibration_is_part_of_the_identity(model_dirs, tmp_path):
    from promptembed import EmbedderConfig

    a = of_config(EmbedderConfig(calibration="/x/calibration-abcabcabcabc.npz")).record()
    b = of_config(EmbedderConfig(calibration="/y/calibration-abcabcabcabc.npz")).record()
    c = of_config(EmbedderConfig(calibration="/y/calibration-defdefdefdef.npz")).record()
    assert a == b and a != c and of_config(EmbedderConfig()).record()["calibration"] is None


# -- Chinese ------------------------------------------------------------------------------


def test_nan_calibration_is_refused_naming_the_cause(model_dirs, tmp_path):
    base = PromptEmbedder(str(model_dirs["llama"]), device="cpu", template="eol")
    good = Calibration.load(fitted(base, tmp_path / "good"))
    good.mean[3] = np.nan
    file = good.save(tmp_path / "nan")  # a valid file name and hash, NaN inside
    with pytest.raises(ValueError, match=r"non-finite values .* mean.*refit"):
        PromptEmbedder(
            str(model_dirs["llama"]), device="cpu", template="eol", calibration=str(file)
        )
    with pytest.raises(ValueError, match="NaN or inf; nothing was fitted"):
        Calibration.fit(np.full((4, 8), np.nan))


def test_calibration_without_fit_record_is_refused(model_dirs, tmp_path):
    base = PromptEmbedder(str(model_dirs["llama"]), device="cpu", template="eol")
    file = Calibration.fit(base.embed_raw(TEXTS)).save(tmp_path)  # no fitted_on
    with pytest.raises(ValueError, match="no fit record for model, gguf_file, template"):
        PromptEmbedder(
            str(model_dirs["llama"]), device="cpu", template="eol", calibration=str(file)
        )


def test_unreadable_calibration_file_names_file_and_fix(tmp_path):
    import hashlib

    blob = b"this is not a zip archive"
    file = tmp_path / f"calibration-{hashlib.sha256(blob).hexdigest()[:12]}.npz"
    file.write_bytes(blob)  # its name matches its content: only parsing can tell
    with pytest.raises(ValueError, match=f"{file.name} is unreadable.*promptembed calibrate"):
        Calibration.load(file)


# -- malformed files are refused naming the file and its shapes (issue 21) -----------------------


def _npz(tmp_path, name: str, **arrays) -> str:
    import io
    import json

    arrays.setdefault("meta", np.array(json.dumps({"method": "whiten"})))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    file = tmp_path / f"{name}.npz"
    file.write_bytes(buffer.getvalue())
    return str(file)


MEAN = np.zeros(48, dtype=np.float32)
MALFORMED = {
    "scalar-mean": ({"mean": np.array(1.5, dtype=np.float32)}, r"mean has shape \(\)"),
    "string-mean": ({"mean": np.array("abc")}, r"mean has shape \(\) and dtype <U3"),
    "meta-list": ({"mean": MEAN, "meta": np.array("[1, 2]")}, "meta is a JSON list"),
    "mean-48x1": ({"mean": np.zeros((48, 1), np.float32)}, r"mean has shape \(48, 1\)"),
    "projection-47x8": (
        {"mean": MEAN, "projection": np.zeros((47, 8), np.float32)},
        r"projection has shape \(47, 8\).*not \(48, k\)",
    ),
    "projection-3d": (
        {"mean": MEAN, "projection": np.zeros((48, 8, 2), np.float32)},
        r"projection has shape \(48, 8, 2\)",
    ),
    "projection-48x0": (
        {"mean": MEAN, "projection": np.zeros((48, 0), np.float32)},
        r"projection has shape \(48, 0\).*k >= 1",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_calibration_file_is_refused_naming_file_and_shapes(tmp_path, case):
    arrays, message = MALFORMED[case]
    file = _npz(tmp_path, case, **arrays)
    with pytest.raises(ValueError, match=rf"calibration file .*{case}\.npz is malformed: "):
        Calibration.load(file)
    with pytest.raises(ValueError, match=message):
        Calibration.load(file)


def test_calibration_of_another_width_names_file_and_model_dimension(model_dirs, tmp_path):
    file = _npz(tmp_path, "wide", mean=MEAN)  # 48 wide; the tiny Llama is 32 wide
    cal = Calibration.load(file)
    with pytest.raises(ValueError, match=r"wide\.npz was fitted on 48-wide .*model's are 32-wide"):
        cal.check(PromptEmbedder(str(model_dirs["llama"]), device="cpu").config, 32)


def test_cli_refuses_a_malformed_calibration_in_one_line(tmp_path, model_dirs):
    from typer.testing import CliRunner

    from promptembed.cli import app

    file = _npz(tmp_path, "meta-list", mean=MEAN, meta=np.array("[1]"))
    data = tmp_path / "sts.csv"
    data.write_text("sentence1,sentence2,score\na,b,1\nc,d,2\ne,f,3\n", encoding="utf-8")
    out = CliRunner().invoke(
        app,
        [
            "eval",
            "sts",
            "--model",
            str(model_dirs["llama"]),
            "--device",
            "cpu",
            "--data",
            str(data),
        ],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output  # the plain run works
    config = tmp_path / "cfg.toml"
    config.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"]}"\ndevice = "cpu"\ncalibration = "{file}"\n',
        encoding="utf-8",
    )
    out = CliRunner().invoke(app, ["eval", "sts", "--config", str(config), "--data", str(data)])
    assert out.exit_code == 2, out.output
    assert "meta-list.npz is malformed" in out.output and "Traceback" not in out.output
