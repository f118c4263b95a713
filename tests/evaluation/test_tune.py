"""`promptembed calibrate` and `promptembed tune` on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from promptembed import PromptEmbedder, load_config
from promptembed.cli import app
from promptembed.engine.calibration import Calibration
from promptembed.evaluation.tuning import tune

PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 5.0),
    ("A child rides a horse.", "A kid is riding a horse.", 4.6),
    ("The cat sat on the mat.", "Stocks fell sharply on Monday.", 0.0),
    ("A woman is slicing onions.", "Someone cuts an onion.", 4.0),
    ("Rain is expected tomorrow.", "A man is playing a guitar.", 0.2),
    ("The dog barks.", "A dog is barking loudly.", 4.2),
]
SAMPLE = [
    f"unlabeled sentence {i} about {w}."
    for i, w in enumerate(["birds", "trains", "bread", "tax", "snow", "jazz", "tea", "code"] * 3)
]


@pytest.fixture
def config_file(tmp_path, model_dirs):
    path = tmp_path / "pe.toml"
    path.write_text(
        "# my settings\n[embedder]\n"
        f"model = {str(model_dirs['llama'])!r}\ntemplate = 'eol'\ndevice = 'cpu'\n"
    )
    return path


def test_tune_scores_every_template_layer_and_ensemble(embedder_factory):
    emb = embedder_factory("llama")
    result = tune(
        emb, PAIRS, templates=["eol", "ke"], layers=[-1, -2], sample=SAMPLE, max_ensemble=2
    )
    keys = {c.templates for c in result.candidates}
    assert {("eol@-1",), ("eol@-2",), ("ke@-1",), ("ke@-2",)} <= keys
    assert any(len(k) == 2 for k in keys)
    assert {c.calibrated for c in result.candidates} == {True, False}
    scores = [c.spearman for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    # A single candidate's score is what an embedder configured that way gets.
    from promptembed.evaluation.sts import evaluate_sts

    single = next(c for c in result.candidates if c.templates == ("ke@-2",) and not c.calibrated)
    direct = evaluate_sts(embedder_factory("llama", template="ke@-2"), PAIRS).spearman
    assert single.spearman == pytest.approx(direct, abs=0.01)


def test_calibrate_cli_writes_hashed_file_and_config(config_file):
    sample = config_file.parent / "sample.txt"
    sample.write_text("\n".join(SAMPLE))
    result = CliRunner().invoke(
        app,
        [
            "calibrate",
            str(sample),
            "--config",
            str(config_file),
            "--method",
            "whiten",
            "--dims",
            "6",
        ],
    )
    assert result.exit_code == 0, result.output
    text = config_file.read_text()
    assert "# my settings" in text  # comments survive
    cfg = load_config(config_file)
    assert cfg.embedder.calibration and cfg.embedder.calibration.endswith(".npz")
    emb = PromptEmbedder(config=cfg.embedder)
    assert emb.dimension == 6
    cal = Calibration.load(cfg.embedder.calibration)
    base = PromptEmbedder(config=cfg.embedder.model_copy(update={"calibration": None}))
    expected = cal.apply(base.embed_raw(["hello there"]))
    np.testing.assert_allclose(
        emb.embed(["hello there"]), expected / np.linalg.norm(expected), atol=1e-5
    )


def run_tune(config_file, tmp_path, args: list[str]):
    """`promptembed tune` on PAIRS as dev data and SAMPLE as the calibration sample."""
    dev = tmp_path / "dev.csv"
    dev.write_text("\n".join(f'"{a}","{b}",{s}' for a, b, s in PAIRS) + "\n")
    sample = tmp_path / "sample.txt"
    sample.write_text("\n".join(SAMPLE))
    base = ["tune", "--data", str(dev), "--config", str(config_file), "--sample", str(sample)]
    return CliRunner().invoke(app, base + args)


def test_tune_cli_writes_a_working_winner(config_file, tmp_path):
    result = run_tune(
        config_file,
        tmp_path,
        [
            "--templates",
            "eol,cot",
            "--max-ensemble",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    cfg = load_config(config_file)
    emb = PromptEmbedder(config=cfg.embedder)  # the written config loads and embeds
    assert emb.embed(["x"]).shape == (1, emb.dimension)
    templates = cfg.embedder.templates
    assert all("@" in t for t in templates)


def test_calibrate_rejects_unknown_method(config_file):
    result = CliRunner().invoke(
        app, ["calibrate", str(config_file), "--config", str(config_file), "--method", "pca"]
    )
    assert result.exit_code == 2 and "center' or 'whiten" in result.output


def test_tune_tries_whitening_and_the_cli_writes_that_calibration(
    config_file, tmp_path, monkeypatch
):
    import importlib

    # The module, not the function `tune` that promptembed.evaluation re-exports under its name.
    tune_module = importlib.import_module("promptembed.evaluation.tuning")
    monkeypatch.setattr(tune_module, "CALIBRATIONS", (("whiten-8", "whiten", 8),))
    result = run_tune(
        config_file,
        tmp_path,
        [
            "--templates",
            "eol",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.stdout.strip().splitlines()[-1])
    calibrated = [r for r in rows if r["calibrated"]]
    assert calibrated and all(r["calibration"] == "whiten-8" for r in calibrated)
    cfg = load_config(config_file)
    if rows[0]["calibrated"]:  # the written file is the winner's calibration
        cal = Calibration.load(cfg.embedder.calibration)
        assert cal.fitted_on["method"] == "whiten" and cal.dimension == 8
    else:
        assert cfg.embedder.calibration is None


def _train_pairs(n: int = 40) -> list[tuple[str, str, float]]:
    things = ["guitar", "horse", "onion", "stock", "cat", "dog", "train", "bread"]
    return [
        (f"A man likes the {things[i % 8]} {i}.", f"Someone sees a {things[(i * 3) % 8]}.", i % 5)
        for i in range(n)
    ]


def test_split_train_is_deterministic_and_keeps_selection_sentences_out_of_fit():
    from promptembed.evaluation.tuning import split_train

    pairs = [*_train_pairs(), ("A man likes the guitar 0.", "shared with a selected row", 3.0)]
    fit, selection = split_train(pairs, selection=10)
    assert (fit, selection) == split_train(pairs, selection=10)  # same split every time
    assert len(selection) == 10 and set(selection) <= set(pairs)
    held = {s for a, b, _ in selection for s in (a, b)}
    assert not held & {s for a, b, _ in fit for s in (a, b)}
    assert len(fit) + len(selection) <= len(pairs)
    with pytest.raises(ValueError, match=r"selection must be in 1\.\.40"):
        split_train(pairs, selection=41)


def test_tune_cli_selects_on_train_then_scores_dev_once(config_file, tmp_path):
    import json

    from promptembed.evaluation.data import read_sts
    from promptembed.evaluation.sts import evaluate_sts
    from promptembed.evaluation.tuning import split_train

    train, dev = tmp_path / "train.csv", tmp_path / "dev.csv"
    train.write_text("".join(f'"{a}","{b}",{s}\n' for a, b, s in _train_pairs()))
    dev.write_text("".join(f'"{a}","{b}",{s}\n' for a, b, s in PAIRS))
    fit, _selection = split_train(read_sts(train), selection=12)
    demos = tmp_path / "demos.json"
    group = [[fit[0][0], "Guitar"], [fit[1][0], "Horse"]]  # two shown together
    demos.write_text(json.dumps([*group, group]))
    base = ["tune", "--config", str(config_file), "--train", str(train), "--dev", str(dev)]
    args = ["--selection-size", "12", "--templates", "eol", "--demonstrations", str(demos)]
    boosters = ["--token-prepending", "1-2", "--contrastive", "1:0.5"]
    result = CliRunner().invoke(app, [*base, *args, *boosters, "--json"])
    assert result.exit_code == 0, result.output
    summary, rows = (json.loads(x) for x in result.stdout.strip().splitlines()[-2:])
    variants = {json.dumps(r["variant"]) for r in rows}
    # plain, each demonstration, the group, one TP span, one contrastive setting
    assert len(variants) == 6
    assert {"demonstrations": group} in [r["variant"] for r in rows]
    assert {"contrastive": [1, 0.5]} in [r["variant"] for r in rows]
    assert summary["pairs"] == 12 and summary["selection"] == rows[0]["spearman"]
    # The dev number is what `promptembed eval sts --config` gets from the written config.
    cfg = load_config(config_file).embedder
    assert cfg.demonstrations == rows[0]["variant"].get("demonstrations")
    direct = evaluate_sts(PromptEmbedder(config=cfg), read_sts(dev)).spearman
    assert summary["dev"] == pytest.approx(direct, abs=0.01)
    assert summary["difference"] == pytest.approx(summary["dev"] - summary["selection"], abs=0.01)


def test_tune_cli_refuses_demonstrations_from_the_selection_part(config_file, tmp_path):
    import json

    from promptembed.evaluation.data import read_sts
    from promptembed.evaluation.tuning import split_train

    train = tmp_path / "train.csv"
    train.write_text("".join(f'"{a}","{b}",{s}\n' for a, b, s in _train_pairs()))
    _, selection = split_train(read_sts(train), selection=12)
    demos = tmp_path / "demos.json"
    demos.write_text(json.dumps([[selection[0][0], "Leak"]]))
    before = config_file.read_text()
    result = CliRunner().invoke(
        app,
        [
            "tune",
            "--config",
            str(config_file),
            "--train",
            str(train),
            "--selection-size",
            "12",
            "--demonstrations",
            str(demos),
        ],
    )
    assert result.exit_code != 0 and "fit part" in result.output
    assert config_file.read_text() == before  # nothing written


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--contrastive", "8", "block:alpha"),
        ("--contrastive", "x:1", "block:alpha"),
        ("--demonstrations", '[["only a sentence"]]', "must be"),
        ("--demonstrations", '[[["s", "w"], "loose"]]', "must be"),
    ],
)
def test_tune_cli_refuses_malformed_booster_candidates(
    config_file, tmp_path, option, value, message
):
    train = tmp_path / "train.csv"
    train.write_text("".join(f'"{a}","{b}",{s}\n' for a, b, s in _train_pairs()))
    if option == "--demonstrations":
        (tmp_path / "demos.json").write_text(value)
        value = str(tmp_path / "demos.json")
    before = config_file.read_text()
    args = ["tune", "--config", str(config_file), "--train", str(train), "--selection-size", "12"]
    result = CliRunner().invoke(app, [*args, option, value])
    assert result.exit_code != 0 and message in result.output
    assert config_file.read_text() == before  # nothing written


@pytest.mark.parametrize(
    ("option", "value", "field", "shown"),
    [
        ("--contrastive", "8:0", "contrastive", "[8, 0.0]"),
        ("--token-prepending", "0-4", "token_prepending", "[0, 4]"),
        ("--demonstrations", '[["", "word"]]', "demonstrations", "('', 'word')"),
    ],
)
def test_tune_cli_refuses_bad_booster_values_before_the_model_loads(
    config_file, tmp_path, monkeypatch, option, value, field, shown
):
    import promptembed.evaluation.tune_config as tune_config

    def no_model(*args, **kwargs):
        raise AssertionError("the model loaded before the candidates were validated")

    monkeypatch.setattr(tune_config, "PromptEmbedder", no_model)
    train = tmp_path / "train.csv"
    train.write_text("".join(f'"{a}","{b}",{s}\n' for a, b, s in _train_pairs()))
    if option == "--demonstrations":
        (tmp_path / "demos.json").write_text(value)
        value = str(tmp_path / "demos.json")
    before, files = config_file.read_text(), sorted(tmp_path.iterdir())
    args = ["tune", "--config", str(config_file), "--train", str(train), "--selection-size", "12"]
    result = CliRunner().invoke(app, [*args, option, value])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert f"{field}: " in lines[0] and shown in lines[0]
    assert config_file.read_text() == before and sorted(tmp_path.iterdir()) == files
