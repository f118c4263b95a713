"""Write benchmarks/quality/tables.py's markdown into README.md between marker comments.

    python -m benchmarks.quality.readme_tables

Each table goes between ``<!-- NAME -->`` and ``<!-- /NAME -->`` in the README or in
any ``docs/*.md`` page that holds those markers.
"""

from __future__ import annotations

import re

from benchmarks.common import ROOT
from benchmarks.quality.tables import (
    booster_table,
    scifact_booster_table,
    scifact_table,
    sts_table,
    zh_table,
)

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def replace(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


if __name__ == "__main__":
    tables = {
        "sts-table": sts_table,
        "booster-table": booster_table,
        "zh-table": zh_table,
        "scifact-table": scifact_table,
        "scifact-booster-table": scifact_booster_table,
    }
    for page in PAGES:
        text = original = page.read_text(encoding="utf-8")
        for name, table in tables.items():
            if f"<!-- {name} -->" in text:
                text = replace(text, name, table())
        if text != original:
            page.write_text(text, encoding="utf-8")
            print(f"updated {page.relative_to(ROOT)}")
