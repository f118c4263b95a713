"""MTEB face: promptembed as an mteb 2.x model, and mteb tasks built from local files.

Requires the ``mteb`` extra (``pip install 'promptembed[mteb]'``). :class:`MtebModel`
implements mteb's encoder protocol over :class:`~promptembed.PromptEmbedder`: for every
call it picks the templates from the config's ``[mteb.templates]`` table by the task's
type, languages and prompt type (:class:`promptembed.config.MtebConfig`), logs which
entry it used, and records the table in the model's metadata (mteb writes it to each
result folder's ``model_meta.json``). :func:`sts_task` and :func:`beir_task` turn an STS
CSV and a BEIR folder into mteb tasks that need no hub.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptembed._util.optional import require

mteb = require("mteb", "mteb")

from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction

from promptembed.config import Config, EmbedderConfig, Route, load_config
from promptembed.evaluation.data import read_beir, read_sts
from promptembed.registry import shared_embedder

if TYPE_CHECKING:
    import numpy as np

    from promptembed.engine.embedder import PromptEmbedder

__all__ = [
    "HubUnreachableError",
    "MtebModel",
    "beir_task",
    "evaluate",
    "model_meta",
    "sts_task",
]

logger = logging.getLogger(__name__)

HUB_HINT = (
    "mteb datasets come from the Hugging Face hub, which cannot be reached from here: run "
    "once where it can, then point mteb at that copy with HF_HOME=<cache folder> (or "
    "HF_DATASETS_CACHE) and HF_HUB_OFFLINE=1, or evaluate local files with --sts/--beir"
)


class HubUnreachableError(OSError):
    """An mteb task's dataset could not be fetched from the Hugging Face hub (one line)."""


class MtebModel(AbsEncoder):
    """An mteb encoder over :class:`~promptembed.PromptEmbedder`, templates chosen per task.

    Args:
        config: A :class:`~promptembed.config.Config`, TOML path or dict; its
            ``[embedder]`` builds the vectors, its ``[mteb]`` table picks the templates.
        embedder: An already loaded embedder for ``config.embedder`` (else one is loaded).

    Example:
        >>> import mteb  # doctest: +SKIP
        >>> model = MtebModel("examples/configs/best-gemma-en.toml")  # doctest: +SKIP
        >>> mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]))  # doctest: +SKIP

    """

    def __init__(
        self,
        config: Config | str | Path | dict[str, Any] | None = None,
        *,
        embedder: PromptEmbedder | None = None,
    ) -> None:
        self.config = load_config(config if config is not None else {})
        self.table = self.config.mteb
        base = embedder if embedder is not None else shared_embedder(self.config.embedder)
        self.model = base
        self._derived: dict[tuple[str, ...], PromptEmbedder] = {}
        self.routes: dict[tuple[str, str, str], Route] = {}
        """Each (task, subset, prompt type) seen, and the entry it used."""
        self.mteb_model_meta = model_meta(self.config, base)

    def route(self, task_metadata: TaskMetadata, hf_subset: str, prompt_type: Any = None) -> Route:
        """The table entry for one call, logged the first time it is used."""
        languages = _languages(task_metadata, hf_subset)
        kind = getattr(prompt_type, "value", prompt_type)
        route = self.table.route(task_metadata.type, languages, kind, self.model.config)
        seen = (task_metadata.name, hf_subset, str(kind))
        if seen not in self.routes:
            self.routes[seen] = route
            where = f"{task_metadata.name} ({task_metadata.type}, {', '.join(languages)}, {kind})"
            if route.fallback:
                logger.warning(
                    "mteb task %s: no [mteb.templates] entry for task type %r, using the "
                    "default %s",
                    where,
                    task_metadata.type,
                    route.describe(),
                )
            else:
                logger.info("mteb task %s: %s", where, route.describe())
        return route

    def embedder_for(self, route: Route) -> tuple[PromptEmbedder, str]:
        """The embedder and kind (document or query) that give a route's templates."""
        base = self.model
        if route.templates == base.config.templates and route.kind == "document":
            return base, "document"
        if route.templates == base.config.query_templates:
            return base, "query"
        if route.templates == base.config.templates:
            return base, "document"
        key = tuple(route.templates)
        if key not in self._derived:
            fields = base.config.model_dump(exclude_unset=True)
            fields.update(
                template=list(route.templates),
                query_template=None,
                calibration=None,
                demonstrations=None,
            )
            self._derived[key] = shared_embedder(EmbedderConfig.model_validate(fields))
        return self._derived[key], "document"

    def encode(
        self,
        inputs: Iterable[dict[str, Any]],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed a dataloader's texts with the templates the table gives this call.

        Args:
            inputs: mteb's dataloader (batches with a ``text`` column).
            task_metadata: The task: its type and languages pick the table entry.
            hf_split: The split (unused).
            hf_subset: The subset; for a multilingual task it names the languages.
            prompt_type: ``query``, ``document`` or None.
            **kwargs: mteb's encode arguments (unused: promptembed batches by tokens).

        Returns:
            ``(n, dimension)`` float32 unit vectors.

        """
        texts = [text for batch in inputs for text in batch["text"]]
        embedder, kind = self.embedder_for(self.route(task_metadata, hf_subset, prompt_type))
        return embedder.embed(texts, kind=kind)


def _languages(task_metadata: TaskMetadata, hf_subset: str) -> list[str]:
    """The languages of one subset of a task (all the task's for a one-subset task)."""
    langs = task_metadata.eval_langs
    if isinstance(langs, dict):
        return list(langs.get(hf_subset) or next(iter(langs.values())))
    return list(langs)


def model_meta(config: Config, embedder: PromptEmbedder) -> ModelMeta:
    """The mteb ``ModelMeta`` for a config: the ``[embedder]`` and ``[mteb]`` tables included.

    Both tables go into ``experiment_kwargs``, which mteb writes to the result folder's
    ``model_meta.json`` (and hashes into its folder name), so a score names its config.

    Example:
        >>> model_meta(cfg, emb).experiment_kwargs["mteb"]["templates"]["STS"]  # doctest: +SKIP
        '[embedder].template'

    """
    e = config.embedder
    model = Path(e.model).name if Path(e.model).exists() else e.model
    return ModelMeta(
        loader=None,
        name=f"promptembed/{model.replace('/', '__')}",
        revision=embedder.fingerprint[:12] if embedder.fingerprint else None,
        release_date=None,
        languages=None,
        n_parameters=sum(p.numel() for p in embedder.model.parameters()),
        memory_usage_mb=None,
        max_tokens=float(e.max_length),
        embed_dim=embedder.dimension,
        license=None,
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["PyTorch"],
        reference="https://arxiv.org/abs/2404.03921",
        similarity_fn_name=ScoringFunction.COSINE,
        use_instructions=False,
        training_datasets=set(),
        experiment_kwargs={
            "embedder": e.model_dump(mode="json"),
            "mteb": config.mteb.model_dump(mode="json"),
        },
    )


# -- local tasks -----------------------------------------------------------------------------


def _metadata(name: str, kind: str, split: str, language: str, main_score: str) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        description=f"Local {kind} task built by promptembed from files.",
        reference=None,
        dataset={"path": f"local/{name}", "revision": "local"},
        type=kind,
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=[language],
        main_score=main_score,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )


def guess_language(texts: Sequence[str]) -> str:
    """``cmn-Hans`` when a third of the letters are CJK ideographs, else ``eng-Latn``.

    Example:
        >>> guess_language(["一个男人在弹吉他。"]), guess_language(["A man plays."])
        ('cmn-Hans', 'eng-Latn')

    """
    letters = [c for t in texts[:200] for c in t if c.isalpha()]
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in letters)
    return "cmn-Hans" if letters and cjk / len(letters) > 1 / 3 else "eng-Latn"


class LocalStsTask(AbsTaskSTS):
    """An mteb STS task over in-memory ``(s1, s2, score)`` rows (scores 0 to 5).

    Example:
        >>> task = LocalStsTask("MySTS", [("a", "b", 4.0)], language="eng-Latn")  # doctest: +SKIP

    """

    min_score = 0
    max_score = 5

    def __init__(
        self,
        name: str,
        rows: Sequence[tuple[str, str, float]],
        *,
        language: str,
        split: str = "dev",
    ) -> None:
        self.metadata = _metadata(name, "STS", split, language, "cosine_spearman")
        self._rows = list(rows)
        super().__init__()

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Put the rows in mteb's shape (a ``datasets`` split); nothing is fetched."""
        from datasets import Dataset, DatasetDict

        s1, s2, score = (list(column) for column in zip(*self._rows))
        split = self.metadata.eval_splits[0]
        data = {"sentence1": s1, "sentence2": s2, "score": score}
        self.dataset = DatasetDict({split: Dataset.from_dict(data)})
        self.data_loaded = True


class LocalRetrievalTask(AbsTaskRetrieval):
    """An mteb retrieval task over an in-memory corpus, queries and graded qrels.

    Example:
        >>> task = LocalRetrievalTask("Mine", {"d1": "x"}, {"q1": "y"}, {"q1": {"d1": 1}},
        ...                           language="eng-Latn")  # doctest: +SKIP

    """

    def __init__(
        self,
        name: str,
        docs: dict[str, str],
        queries: dict[str, str],
        qrels: dict[str, dict[str, int]],
        *,
        language: str,
        split: str = "dev",
    ) -> None:
        self.metadata = _metadata(name, "Retrieval", split, language, "ndcg_at_10")
        self._parts = (docs, queries, qrels)
        super().__init__()

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Put the parts in mteb's shape (``RetrievalSplitData``); nothing is fetched."""
        from datasets import Dataset
        from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

        docs, queries, qrels = self._parts
        split = RetrievalSplitData(
            corpus=Dataset.from_list([{"id": k, "text": v} for k, v in docs.items()]),
            queries=Dataset.from_list([{"id": k, "text": v} for k, v in queries.items()]),
            relevant_docs={q: qrels[q] for q in queries},
            top_ranked=None,
        )
        self.dataset = {"default": {self.metadata.eval_splits[0]: split}}
        self.data_loaded = True


def sts_task(path: str | Path, *, name: str | None = None, language: str | None = None) -> Any:
    """An mteb STS task from an STS CSV (``s1,s2,score``, as ``promptembed eval sts`` reads).

    Args:
        path: The CSV file.
        name: Task name; default ``Local`` + the file's stem (``Local-stsb-en-dev``).
        language: mteb language (``eng-Latn``, ``cmn-Hans``); default guessed from the text.

    Example:
        >>> mteb.evaluate(MtebModel(cfg), [sts_task("stsb-zh-dev.csv")])  # doctest: +SKIP

    """
    rows = read_sts(path)
    language = language or guess_language([s for a, b, _ in rows for s in (a, b)])
    return LocalStsTask(name or f"Local-{Path(path).stem}", rows, language=language)


def beir_task(
    folder: str | Path,
    *,
    split: str | None = None,
    name: str | None = None,
    language: str | None = None,
) -> Any:
    """An mteb retrieval task from a BEIR folder (``corpus.jsonl``, queries, ``qrels/``).

    The queries are ``queries-<split>.jsonl`` when present, else ``queries.jsonl``; only
    queries with qrels are kept, as ``promptembed eval retrieval`` does.

    Args:
        folder: The BEIR folder.
        split: The qrels file ``qrels/<split>.tsv``; default the folder's only one.
        name: Task name; default ``Local-`` + the folder's name.
        language: mteb language; default guessed from the queries.

    Raises:
        FileNotFoundError: If a part is missing, or the split is ambiguous.

    Example:
        >>> mteb.evaluate(MtebModel(cfg), [beir_task("data/scifact")])  # doctest: +SKIP

    """
    root = Path(folder)
    if split is None:
        found = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        if len(found) != 1:
            raise FileNotFoundError(
                f"{root / 'qrels'} holds {found or 'no .tsv files'}: name one split"
            )
        split = found[0]
    queries = root / f"queries-{split}.jsonl"
    queries = queries if queries.is_file() else root / "queries.jsonl"
    docs, qs, judged = read_beir(root / "corpus.jsonl", queries, root / "qrels" / f"{split}.tsv")
    language = language or guess_language(list(qs.values()))
    return LocalRetrievalTask(
        name or f"Local-{root.name}", docs, qs, judged, language=language, split=split
    )


# -- running ---------------------------------------------------------------------------------


def get_tasks(names: Sequence[str]) -> list[Any]:
    """The mteb tasks of these names (their metadata ships with mteb; their data is on the hub).

    Raises:
        ValueError: If a name is not an mteb task.

    """
    if not names:
        return []  # mteb.get_tasks(tasks=[]) means every task
    try:
        return list(mteb.get_tasks(tasks=list(names)))
    except KeyError as error:
        raise ValueError(f"not an mteb task: {error.args[0] if error.args else error}") from None


def _hub_failure(error: BaseException) -> bool:
    """Whether an error (or one it came from) is a failed hub or network access."""
    seen: BaseException | None = error
    while seen is not None:
        module = type(seen).__module__.split(".")[0]
        if isinstance(seen, (ConnectionError, TimeoutError)) or module in (
            "huggingface_hub",
            "requests",
            "httpx",
            "urllib3",
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def load_tasks(tasks: Sequence[Any]) -> None:
    """Load each task's data, turning a hub failure into one :class:`HubUnreachableError`."""
    for task in tasks:
        if task.data_loaded:
            continue
        try:
            task.load_data()
        except Exception as error:
            if not _hub_failure(error):
                raise
            raise HubUnreachableError(f"{task.metadata.name}: {HUB_HINT}") from error


def evaluate(
    model: MtebModel,
    tasks: Sequence[Any],
    *,
    output: str | Path | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run mteb's own evaluator and return one row per task, split and subset.

    Args:
        model: The wrapper.
        tasks: mteb tasks (:func:`get_tasks`, :func:`sts_task`, :func:`beir_task`).
        output: Folder for mteb's result files (``results/<model>/<revision>/<exp>/``);
            default mteb's cache (``$MTEB_CACHE`` or ``~/.cache/mteb``).
        progress: Show mteb's progress bars.

    Returns:
        Rows with ``task``, ``type``, ``split``, ``subset``, ``languages``,
        ``main_score`` (its name), ``score`` (mteb's value, 0 to 1) and ``entries`` (the
        table entries the task used).

    Raises:
        HubUnreachableError: If a task's data cannot be fetched from the hub.

    Example:
        >>> evaluate(MtebModel(cfg), [sts_task("stsb-en-dev.csv")])[0]["score"]  # doctest: +SKIP
        0.8112

    """
    from mteb.cache import ResultCache

    load_tasks(tasks)
    cache = ResultCache(output) if output is not None else ResultCache()
    result = mteb.evaluate(
        model, list(tasks), cache=cache, overwrite_strategy="always", show_progress_bar=progress
    )
    rows = []
    for task_result in result.task_results:
        meta = next(t.metadata for t in tasks if t.metadata.name == task_result.task_name)
        entries = sorted({r.key for (name, _, _), r in model.routes.items() if name == meta.name})
        for split, scores in task_result.scores.items():
            for score in scores:
                rows.append(
                    {
                        "task": meta.name,
                        "type": meta.type,
                        "split": split,
                        "subset": score.get("hf_subset"),
                        "languages": score.get("languages"),
                        "main_score": meta.main_score,
                        "score": score["main_score"],
                        "entries": entries,
                    }
                )
    return rows
