"""Print every import cycle among promptembed's own modules (exit 1 if there is one).

Run: python tools/import_cycles.py [--with-type-checking]

Uses grimp (import-linter's graph builder). A cycle is a strongly connected component
of the module import graph with more than one module. Imports inside functions count;
``if TYPE_CHECKING:`` imports count only with ``--with-type-checking``.
"""

from __future__ import annotations

import sys

import grimp


def cycles(with_type_checking: bool) -> list[list[str]]:
    """Strongly connected components (Tarjan) of promptembed's import graph."""
    graph = grimp.build_graph("promptembed", exclude_type_checking_imports=not with_type_checking)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for module in modules:
        if module not in index:
            visit(module)
    return found


if __name__ == "__main__":
    found = cycles("--with-type-checking" in sys.argv)
    for component in found:
        print("cycle:", " <-> ".join(component))
    print(f"{len(found)} import cycles among promptembed modules")
    sys.exit(1 if found else 0)
