"""Write benchmarks/tables.py's markdown into README.md between marker comments.

python benchmarks/readme_tables.py
"""

from __future__ import annotations

import re
from pathlib import Path

from tables import booster_table, scifact_booster_table, scifact_table, sts_table, zh_table

README = Path(__file__).resolve().parents[1] / "README.md"


def replace(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    text = replace(text, "sts-table", sts_table())
    text = replace(text, "booster-table", booster_table())
    text = replace(text, "zh-table", zh_table())
    text = replace(text, "scifact-table", scifact_table())
    text = replace(text, "scifact-booster-table", scifact_booster_table())
    README.write_text(text, encoding="utf-8")
