"""The ``[mteb]`` table: which promptembed templates an MTEB task gets.

mteb tells a model, on every call, the task's type (``STS``, ``Retrieval``, ...), its
languages and the prompt type (``query`` or ``document``). :class:`MtebConfig` maps
them to templates; :mod:`promptembed.mteb` applies the mapping. Standard library and
pydantic only, like the rest of the config layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptembed.templates import Template


class TemplateSource(Protocol):
    """What a route reads of an embedder config (``EmbedderConfig`` has it)."""

    @property
    def templates(self) -> list[str]: ...  # noqa: D102

    @property
    def query_templates(self) -> list[str]: ...  # noqa: D102


DOCUMENT_REF = "[embedder].template"
"""Table value meaning the ``[embedder]`` document template(s), as configured."""
QUERY_REF = "[embedder].query_template"
"""Table value meaning the ``[embedder]`` query template(s) (the document ones when unset)."""
PROMPT_TYPES = ("query", "document")

DEFAULT_TEMPLATES: dict[str, str | list[str]] = {
    "*": DOCUMENT_REF,
    "STS": DOCUMENT_REF,
    "Classification": DOCUMENT_REF,
    "MultilabelClassification": DOCUMENT_REF,
    "Clustering": DOCUMENT_REF,
    "PairClassification": DOCUMENT_REF,
    "Retrieval:query": QUERY_REF,
    "Retrieval:document": DOCUMENT_REF,
    "Reranking:query": QUERY_REF,
    "Reranking:document": DOCUMENT_REF,
}
"""The built-in table: the best STS config for STS, classification and clustering;
queries of retrieval and reranking the query template, their documents the document one."""

# ISO 639-1 codes a table key may use, and the ISO 639-3 codes mteb writes for them.
_ISO1 = {
    "zh": frozenset({"zho", "cmn", "yue", "wuu", "lzh", "hak", "nan"}),
    "en": frozenset({"eng"}),
}
# The Chinese counterparts of the built-ins (templates.py); other built-ins are eol-shaped.
_ZH = {"eol": "zh-eol", "cot": "zh-cot", "ke": "zh-ke"}
_ZH_FALLBACK = "zh-eol"
_ZH_SHAPED = ("sth", "sum", "query", "passage", "claim", "question")


@dataclass(frozen=True)
class TableKey:
    """One parsed key of ``[mteb.templates]``: ``[language/]task_type[:prompt_type]``.

    ``None`` is a wildcard (``*`` as task type, or a part left out).

    Example:
        >>> TableKey.parse("zh/Retrieval:query")
        TableKey(language='zh', task_type='Retrieval', prompt_type='query')

    """

    language: str | None
    task_type: str | None
    prompt_type: str | None

    @classmethod
    def parse(cls, key: str) -> TableKey:
        """Parse a key, refusing an empty part or an unknown prompt type.

        Raises:
            ValueError: Naming the key and the valid shape.

        """
        language, slash, rest = key.rpartition("/")
        task_type, colon, prompt = rest.partition(":")
        shape = "use [language/]task_type[:prompt_type], e.g. 'STS', 'zh/Retrieval:query', '*'"
        if (slash and not language) or not task_type or (colon and prompt not in PROMPT_TYPES):
            raise ValueError(
                f"mteb.templates key {key!r} is not valid: {shape}; prompt types: "
                f"{', '.join(PROMPT_TYPES)}"
            )
        return cls(
            language or None,
            None if task_type == "*" else task_type,
            prompt or None,
        )

    def matches(self, task_type: str, languages: Sequence[str], prompt_type: str | None) -> bool:
        """Whether this key covers a call (a language key must cover every language)."""
        return (
            (self.task_type is None or self.task_type == task_type)
            and (self.prompt_type is None or self.prompt_type == prompt_type)
            and (
                self.language is None
                or (bool(languages) and all(language_matches(self.language, x) for x in languages))
            )
        )

    @property
    def rank(self) -> tuple[bool, bool, bool]:
        """Specificity: a language beats a task type, which beats a prompt type."""
        return (self.language is not None, self.task_type is not None, self.prompt_type is not None)


def language_matches(key: str, language: str) -> bool:
    """Whether a table language (``zh``, ``cmn``, ``cmn-Hans``) covers an mteb language.

    Example:
        >>> language_matches("zh", "cmn-Hans"), language_matches("en", "cmn-Hans")
        (True, False)

    """
    code = language.split("-")[0]
    return key in (language, code) or code in _ISO1.get(key, ())


def is_chinese(languages: Sequence[str]) -> bool:
    """Whether every language of a call is a Chinese one (``cmn-Hans``, ``zho-Hant``, ...)."""
    return bool(languages) and all(language_matches("zh", x) for x in languages)


def chinese_counterparts(specs: Sequence[str]) -> list[str]:
    """The ``zh-`` counterparts of built-in templates, layers kept; Chinese ones as they are.

    A list that already holds a ``zh-`` template, or a custom template, is returned as is.

    Example:
        >>> chinese_counterparts(["eol@-1", "ke"]), chinese_counterparts(["zh-ke", "sum"])
        (['zh-eol@-1', 'zh-ke'], ['zh-ke', 'sum'])

    """
    names = [spec.rpartition("@")[0] if "@" in spec else spec for spec in specs]
    if any(n.startswith("zh-") for n in names) or not all(
        n in _ZH or n in _ZH_SHAPED for n in names
    ):
        return list(specs)
    out = []
    for spec, name in zip(specs, names):
        layer = spec[len(name) :]
        out.append(_ZH.get(name, _ZH_FALLBACK) + (layer if name in _ZH else ""))
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Route:
    """The table entry a call used, and the templates it resolved to.

    Example:
        >>> from promptembed.config import EmbedderConfig
        >>> r = MtebConfig().route("Retrieval", ["eng-Latn"], "query", EmbedderConfig())
        >>> r.key, r.templates, r.kind
        ('Retrieval:query', ['query'], 'query')

    """

    key: str
    value: str | list[str]
    templates: list[str]
    kind: str
    """``document`` or ``query``: which [embedder] route, when ``templates`` is one of them."""
    fallback: bool
    """True when no entry names the task type: the ``*`` default was used."""
    chinese: bool
    """True when the zh- counterparts replaced the [embedder] templates."""

    def describe(self) -> str:
        """One line saying which entry was used and what it resolved to."""
        text = f"entry {self.key!r} = {self.value!r} -> templates {self.templates}"
        if self.chinese:
            text += " (Chinese counterparts of the [embedder] templates)"
        return text


class MtebConfig(BaseModel):
    """MTEB evaluation (``promptembed eval mteb``, :mod:`promptembed.mteb`).

    ``templates`` maps a task to promptembed templates. A key is
    ``[language/]task_type[:prompt_type]``: ``STS``, ``Retrieval:query``,
    ``zh/Clustering``, ``*`` (any task type). The most specific key that covers a call
    wins: one naming the language beats one that does not, then one naming the task type,
    then one naming the prompt type. A value is a template or ensemble as in
    ``[embedder].template``, or ``"[embedder].template"`` / ``"[embedder].query_template"``
    for the configured ones (then the config is used whole: calibration and
    demonstrations included, the same vectors as ``promptembed eval``). Any other
    template runs with the ``[embedder]`` settings minus its demonstrations and
    calibration, which were fitted to the configured templates. Your entries are
    added to the built-in ones (shown as the default), replacing those with the same key.

    Example:
        >>> cfg = MtebConfig(templates={"zh/STS": "zh-ke"})
        >>> cfg.templates["zh/STS"], cfg.templates["Retrieval:query"]
        ('zh-ke', '[embedder].query_template')

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    templates: dict[str, str | list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_TEMPLATES),
        description="Templates per `[language/]task_type[:prompt_type]` key (`*` any task "
        "type); values as in `[embedder].template`, or `[embedder].template` / "
        "`[embedder].query_template`. Merged over the built-in entries (the default).",
    )
    chinese_templates: bool = Field(
        True,
        description="For a Chinese task, replace the [embedder] templates an entry refers to "
        "by their zh- counterparts (eol, cot, ke to zh-eol, zh-cot, zh-ke; other eol-shaped "
        "built-ins to zh-eol, layers kept), unless they already hold a zh- or custom "
        "template. Entries that name templates are used as written.",
    )

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for key, spec in value.items():
            TableKey.parse(key)
            specs = [spec] if isinstance(spec, str) else list(spec)
            if not specs:
                raise ValueError(f"mteb.templates[{key!r}] is an empty ensemble")
            for one in specs:
                if one in (DOCUMENT_REF, QUERY_REF):
                    if len(specs) > 1:
                        raise ValueError(
                            f"mteb.templates[{key!r}]: {one!r} stands alone, not in a list"
                        )
                    continue
                Template.parse(one)
        return {**DEFAULT_TEMPLATES, **value}

    def entry(
        self, task_type: str, languages: Sequence[str], prompt_type: str | None
    ) -> tuple[str, bool]:
        """The key that covers a call, and whether it is the ``*`` fallback."""
        covering = [
            (TableKey.parse(k).rank, k)
            for k in self.templates
            if TableKey.parse(k).matches(task_type, languages, prompt_type)
        ]
        if not covering:  # only when a user's table replaced "*" by a language-bound one
            return "*", True
        key = max(covering)[1]
        return key, TableKey.parse(key).task_type is None

    def route(
        self,
        task_type: str,
        languages: Sequence[str],
        prompt_type: str | None,
        embedder: TemplateSource,
    ) -> Route:
        """Resolve a call to its entry and templates (see the class docstring)."""
        key, fallback = self.entry(task_type, languages, prompt_type)
        value = self.templates.get(key, DOCUMENT_REF)
        chinese = False
        if value in (DOCUMENT_REF, QUERY_REF):
            kind = "query" if value == QUERY_REF else "document"
            specs = embedder.query_templates if kind == "query" else embedder.templates
            if self.chinese_templates and is_chinese(languages):
                zh = chinese_counterparts(specs)
                chinese, specs = zh != specs, zh
        else:
            kind, specs = "document", [value] if isinstance(value, str) else list(value)
        return Route(key, value, list(specs), kind, fallback, chinese)
