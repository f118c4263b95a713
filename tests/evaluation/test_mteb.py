"""promptembed as an mteb model: mteb's own evaluator on local tasks, template routing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mteb")

from typer.testing import CliRunner

from promptembed.cli import app
from promptembed.config import EmbedderConfig, MtebConfig, load_config
from promptembed.evaluation import evaluate_retrieval, evaluate_sts
from promptembed.mteb import (
    HUB_HINT,
    HubUnreachableError,
    MtebModel,
    beir_task,
    evaluate,
    load_tasks,
    sts_task,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mteb"
STS_EN = FIXTURES / "stsb-en-dev-40.csv"
STS_ZH = FIXTURES / "stsb-zh-dev-40.csv"
CMRC = FIXTURES / "cmrc2018-mini"
ARCH = "llama"


def _config(model_dirs, **embedder):
    fields = {"model": str(model_dirs[ARCH]), "device": "cpu", **embedder}
    return load_config({"embedder": fields})


@pytest.fixture(scope="module")
def mteb_run(model_dirs, tmp_path_factory):
    """One mteb run over the three local tasks; eol documents, query prompt for queries."""
    cfg = _config(model_dirs, template="eol", query_template="query")
    model = MtebModel(cfg)
    out = tmp_path_factory.mktemp("mteb-results")
    tasks = [sts_task(STS_EN), sts_task(STS_ZH), beir_task(CMRC)]
    rows = {r["task"]: r for r in evaluate(model, tasks, output=out)}
    return cfg, model, rows, out


def test_sts_main_score_equals_eval_sts(mteb_run):
    cfg, _, rows, _ = mteb_run
    from promptembed import PromptEmbedder

    en = evaluate_sts(PromptEmbedder(config=cfg.embedder), STS_EN)
    assert rows["Local-stsb-en-dev-40"]["main_score"] == "cosine_spearman"
    assert rows["Local-stsb-en-dev-40"]["score"] == pytest.approx(en.spearman / 100, abs=1e-4)
    assert rows["Local-stsb-en-dev-40"]["entries"] == ["STS"]


def test_chinese_sts_uses_zh_counterpart_and_equals_eval_sts(mteb_run):
    cfg, model, rows, _ = mteb_run
    from promptembed import PromptEmbedder

    route = model.routes[("Local-stsb-zh-dev-40", "default", "None")]
    assert (route.key, route.templates, route.chinese) == ("STS", ["zh-eol"], True)
    zh = EmbedderConfig(**{**cfg.embedder.model_dump(), "template": "zh-eol"})
    expected = evaluate_sts(PromptEmbedder(config=zh), STS_ZH)
    assert rows["Local-stsb-zh-dev-40"]["score"] == pytest.approx(expected.spearman / 100, abs=1e-4)
    assert rows["Local-stsb-zh-dev-40"]["languages"] == ["cmn-Hans"]


def test_retrieval_main_score_equals_eval_retrieval(mteb_run):
    cfg, model, rows, _ = mteb_run
    from promptembed import PromptEmbedder

    # The default table on a Chinese task: zh-eol for both queries and passages.
    assert model.routes[("Local-cmrc2018-mini", "default", "query")].templates == ["zh-eol"]
    zh = EmbedderConfig(
        **{**cfg.embedder.model_dump(), "template": "zh-eol", "query_template": None}
    )
    expected = evaluate_retrieval(
        PromptEmbedder(config=zh),
        CMRC / "corpus.jsonl",
        CMRC / "queries-dev.jsonl",
        CMRC / "qrels" / "dev.tsv",
    )
    row = rows["Local-cmrc2018-mini"]
    assert (row["main_score"], row["split"]) == ("ndcg_at_10", "dev")
    assert row["score"] == pytest.approx(expected.ndcg_at_10, abs=1e-4)
    assert row["entries"] == ["Retrieval:document", "Retrieval:query"]


def test_english_retrieval_equals_eval_retrieval_with_query_template(
    model_dirs, embedder_factory, tmp_path
):
    # The same rows read as English: queries get the query template, passages eol, as
    # `promptembed eval retrieval` does with that config.
    emb = embedder_factory(ARCH, template="eol", query_template="query")
    cfg = _config(model_dirs, template="eol", query_template="query")
    model = MtebModel(cfg, embedder=emb)
    (row,) = evaluate(model, [beir_task(CMRC, language="eng-Latn")], output=tmp_path)
    assert model.routes[("Local-cmrc2018-mini", "default", "query")].templates == ["query"]
    expected = evaluate_retrieval(
        emb, CMRC / "corpus.jsonl", CMRC / "queries-dev.jsonl", CMRC / "qrels" / "dev.tsv"
    )
    assert row["score"] == pytest.approx(expected.ndcg_at_10, abs=1e-4)


def test_results_metadata_holds_the_table(mteb_run):
    cfg, _, _, out = mteb_run
    (meta_file,) = out.rglob("model_meta.json")
    meta = json.loads(meta_file.read_text())
    assert meta["experiment_kwargs"]["mteb"] == cfg.mteb.model_dump(mode="json")
    assert meta["experiment_kwargs"]["embedder"]["template"] == "eol"
    assert {p.name for p in meta_file.parent.glob("Local-*.json")} == {
        "Local-stsb-en-dev-40.json",
        "Local-stsb-zh-dev-40.json",
        "Local-cmrc2018-mini.json",
    }


def test_vectors_are_the_embedders_own(model_dirs, embedder_factory):
    import mteb
    from torch.utils.data import DataLoader

    # An ensemble with a demonstration: the config is used whole, nothing re-derived.
    fields = {"template": ["eol", "ke@-1"], "demonstrations": [["A dog runs.", "Dog"]]}
    emb = embedder_factory(ARCH, **fields)
    model = MtebModel(_config(model_dirs, **fields), embedder=emb)
    texts = [a for a, _, _ in sts_task(STS_EN)._rows[:8]]
    loader = DataLoader([{"text": t} for t in texts], batch_size=3)
    meta = mteb.get_task("STSBenchmark").metadata
    got = model.encode(loader, task_metadata=meta, hf_split="test", hf_subset="default")
    assert (got * emb.embed(texts)).sum(axis=1).min() >= 0.9999


# -- routing (no model run) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_type", "languages", "prompt_type", "key", "templates", "kind"),
    [
        ("STS", ["eng-Latn"], None, "STS", ["eol@-1"], "document"),
        ("Classification", ["eng-Latn"], None, "Classification", ["eol@-1"], "document"),
        ("Clustering", ["cmn-Hans"], None, "Clustering", ["zh-eol@-1"], "document"),
        ("Retrieval", ["eng-Latn"], "query", "Retrieval:query", ["query"], "query"),
        ("Retrieval", ["eng-Latn"], "document", "Retrieval:document", ["eol@-1"], "document"),
        ("Retrieval", ["cmn-Hans"], "query", "Retrieval:query", ["zh-eol"], "query"),
        ("Reranking", ["zho-Hans"], "document", "Reranking:document", ["zh-eol@-1"], "document"),
    ],
)
def test_default_table_routes(task_type, languages, prompt_type, key, templates, kind):
    embedder = EmbedderConfig(template="eol@-1", query_template="query")
    route = MtebConfig().route(task_type, languages, prompt_type, embedder)
    assert (route.key, route.templates, route.kind, route.fallback) == (
        key,
        templates,
        kind,
        False,
    )


def test_chinese_config_is_used_as_is_on_chinese_tasks():
    zh = load_config(Path("examples/configs/best-gemma-zh.toml")).embedder
    route = MtebConfig().route("STS", ["cmn-Hans"], None, zh)
    assert route.templates == zh.templates and not route.chinese


def test_overrides_beat_defaults_and_language_beats_task_type():
    table = MtebConfig(templates={"zh/*": "zh-ke", "STS": "cot", "Retrieval:query": ["query"]})
    embedder = EmbedderConfig(template="eol")
    assert table.route("STS", ["cmn-Hans"], None, embedder).templates == ["zh-ke"]
    assert table.route("STS", ["eng-Latn"], None, embedder).templates == ["cot"]
    assert table.route("Retrieval", ["eng-Latn"], "query", embedder).key == "Retrieval:query"
    # Unchanged built-in entries stay.
    assert table.templates["Clustering"] == "[embedder].template"


def test_chinese_counterparts_can_be_switched_off():
    table = MtebConfig(chinese_templates=False)
    route = table.route("STS", ["cmn-Hans"], None, EmbedderConfig(template="ke"))
    assert route.templates == ["ke"] and not route.chinese


def test_uncovered_task_type_falls_back_and_says_so(model_dirs, embedder_factory, caplog):
    import mteb

    emb = embedder_factory(ARCH, template="eol")
    model = MtebModel(_config(model_dirs, template="eol"), embedder=emb)
    meta = mteb.get_task("BUCC").metadata  # BitextMining: not in the table
    with caplog.at_level(logging.WARNING, logger="promptembed.mteb"):
        route = model.route(meta, next(iter(meta.eval_langs)), None)
    assert route.key == "*" and route.fallback
    assert "no [mteb.templates] entry for task type 'BitextMining'" in caplog.text
    assert "entry '*'" in caplog.text


def test_bad_table_key_and_template_are_refused():
    with pytest.raises(ValueError, match=r"mteb\.templates key 'STS:passage'"):
        MtebConfig(templates={"STS:passage": "eol"})
    with pytest.raises(ValueError, match="placeholder"):
        MtebConfig(templates={"STS": "no placeholder here"})
    with pytest.raises(ValueError, match="stands alone"):
        MtebConfig(templates={"STS": ["[embedder].template", "eol"]})


def test_toml_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[mteb.templates]\n"zh/STS" = "zh-cot"\n', encoding="utf-8")
    assert load_config(path).mteb.templates["zh/STS"] == "zh-cot"


# -- the command line --------------------------------------------------------------------


def test_cli_local_sts_task_equals_eval_sts(model_dirs, tmp_path):
    runner = CliRunner()
    model = str(model_dirs[ARCH])
    # eol: on these random tiny models ke's cosines all lie within 1e-3 of each other,
    # where float32 rounding alone reorders ranks; eol's are spread enough.
    common = ["--model", model, "--template", "eol", "--device", "cpu", "--json"]
    out = runner.invoke(
        app,
        ["-q", "eval", "mteb", "--sts", str(STS_EN), "--output", str(tmp_path), *common],
    )
    assert out.exit_code == 0, out.output
    (row,) = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    sts = runner.invoke(app, ["-q", "eval", "sts", "--data", str(STS_EN), *common])
    assert sts.exit_code == 0, sts.output
    expected = json.loads(sts.stdout.strip().splitlines()[-1])["spearman"]
    assert row["score"] == pytest.approx(expected / 100, abs=1e-4)
    assert list(tmp_path.rglob("Local-stsb-en-dev-40.json"))


def test_hub_failure_is_one_line(monkeypatch):
    import mteb

    task = mteb.get_task("STSBenchmark")

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'mteb/stsbenchmark-sts' on the Hub")

    monkeypatch.setattr(task, "load_data", offline)
    with pytest.raises(HubUnreachableError) as caught:
        load_tasks([task])
    assert str(caught.value) == f"STSBenchmark: {HUB_HINT}"
    assert "\n" not in str(caught.value)


def test_other_load_errors_are_not_called_hub_failures(monkeypatch):
    import mteb

    task = mteb.get_task("STSBenchmark")
    monkeypatch.setattr(task, "load_data", lambda **_: (_ for _ in ()).throw(KeyError("x")))
    with pytest.raises(KeyError):
        load_tasks([task])


@pytest.mark.procs
def test_cli_offline_fails_with_one_line(model_dirs, tmp_path):
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    env = {**os.environ, **offline}
    command = "from promptembed.cli import app; app()"
    done = subprocess.run(
        [sys.executable, "-c", command, "-q", "eval", "mteb", "--tasks",
         "STSBenchmark", "--model", str(model_dirs[ARCH]), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "Hugging Face hub" in errors[0] and "HF_HOME" in errors[0]
