"""Training-free boosters: ensembles, calibration, layer choice, Chinese templates."""

from __future__ import annotations

import numpy as np
import pytest

from promptembed import PromptEmbedder, Template
from promptembed.calibration import Calibration, fit_fields
from promptembed.templates import normalize_sentence_zh

TEXTS = ["A man is playing a guitar.", "A child rides a horse", "一个孩子在骑马。", ""]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_ensemble_is_the_mean_of_its_members(embedder_factory):
    members = ["eol", "cot", "ke"]
    ens = embedder_factory("llama", template=members)
    singles = [embedder_factory("llama", template=t).embed(TEXTS) for t in members]
    expected = unit(np.mean([unit(s) for s in singles], axis=0))
    np.testing.assert_allclose(ens.embed(TEXTS), expected, atol=1e-5)


def test_ensemble_unnormalised_output_is_the_plain_mean(embedder_factory):
    ens = embedder_factory("qwen2", template=["eol", "sum"], normalize_embeddings=False)
    a = embedder_factory("qwen2", template="eol", normalize_embeddings=False).embed(TEXTS)
    b = embedder_factory("qwen2", template="sum", normalize_embeddings=False).embed(TEXTS)
    np.testing.assert_allclose(ens.embed(TEXTS), (unit(a) + unit(b)) / 2, atol=1e-5)


def test_template_at_layer(embedder_factory, reference):
    emb = embedder_factory("llama", template="ke@1", normalize_embeddings=False)
    ids = emb.tokenizer(Template.parse("ke").render("hello"))["input_ids"]
    vec = emb.embed("hello")
    ref = reference("llama", ids, 1)
    assert vec @ ref / np.linalg.norm(vec) / np.linalg.norm(ref) >= 0.9999
    assert Template.parse("ke@-5").layer == -5
    with pytest.raises(ValueError, match="has no"):
        Template.parse("nosuch@-2")


def test_embed_layers_matches_single_layer_embedders(embedder_factory):
    emb = embedder_factory("gemma3", template="eol", normalize_embeddings=False)
    stacked = emb.embed_layers(TEXTS, "eol", [-1, -2, 2])
    assert stacked.shape == (len(TEXTS), 3, emb.hidden_size)
    for j, layer in enumerate([-1, -2, 2]):
        single = embedder_factory(
            "gemma3", template="eol", layer=layer, normalize_embeddings=False
        ).embed(TEXTS)
        np.testing.assert_allclose(stacked[:, j], single, rtol=1e-4, atol=1e-4)


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

    a = EmbedderConfig(calibration="/x/calibration-abcabcabcabc.npz").identity()
    b = EmbedderConfig(calibration="/y/calibration-abcabcabcabc.npz").identity()
    c = EmbedderConfig(calibration="/y/calibration-defdefdefdef.npz").identity()
    assert a == b and a != c and EmbedderConfig().identity()["calibration"] is None


# -- Chinese ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("一个孩子在骑马", "一个孩子在骑马。"),
        ("一个孩子在骑马。", "一个孩子在骑马。"),
        ("你好吗？", "你好吗。"),
        ("他说“走”", "他说「走」"),  # ends in a quote: no period, as in the reference
        ("  空格  ", "空格。"),
        ("", ""),
    ],
)
def test_chinese_normaliser(raw, expected):
    assert normalize_sentence_zh(raw) == expected


def test_chinese_templates_render():
    rendered = Template.parse("zh-eol").render("今天天气很好")
    assert rendered == "这句话：“今天天气很好。”用一个词来概括就是：“"
    assert Template.parse("zh-ke").layer == -2 and Template.parse("zh-cot").layer == -2


def test_chinese_template_embeds(embedder_factory, reference):
    emb = embedder_factory("gemma3", template="zh-cot", normalize_embeddings=False)
    ids = emb.tokenizer(Template.parse("zh-cot").render("一个孩子在骑马"))["input_ids"]
    vec = emb.embed("一个孩子在骑马")
    ref = reference("gemma3", ids, -2)
    assert vec @ ref / np.linalg.norm(vec) / np.linalg.norm(ref) >= 0.9999


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
