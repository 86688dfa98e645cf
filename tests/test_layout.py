"""The layout the tasks' units promise: no circle of imports anywhere in the package, and outside
dist_vpg/tasks/ no module names a task class or a task name (they ask the registry and the task), and
no function in the package is longer than a screen."""

import ast
from pathlib import Path

from dist_vpg import tasks

PACKAGE = Path(__file__).resolve().parent.parent / "dist_vpg"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """dist_vpg modules `path` imports, at its top or inside a function (not those named for
    annotations alone), with the packages above each, whose __init__ runs first (but for the packages
    `path` itself is in)."""
    tree, found = ast.parse(path.read_text()), set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                    ).strip(".")
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
            visit(ast.iter_child_nodes(node))  # inside functions too: a deferred import is still one

    visit(tree.body)
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    within = {m for m in found if m in modules}
    parents = {".".join(m.split(".")[:k]) for m in within for k in range(2, m.count(".") + 1)}
    # a package's own __init__ is already running when its modules import each other
    me = module_name(path)
    return within | {p for p in parents if not (me == p or me.startswith(p + "."))}


def test_no_circle_of_imports():
    graph = {module_name(p): imports(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}
    state: dict[str, str] = {}

    def walk(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError("circle of imports: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    # the layers: the tasks sit below evaluation, play and the native rollout, which ask them
    below = graph["dist_vpg.tasks.base"] | graph["dist_vpg.settings"] | graph["dist_vpg.results"]
    assert not below & {
        "dist_vpg.evaluate",
        "dist_vpg.evaluation",
        "dist_vpg.play",
        "dist_vpg.config",
        "dist_vpg.tasks",
    }
    assert "dist_vpg.tasks" not in graph["dist_vpg.native"]


def test_no_module_outside_the_tasks_names_a_task():
    classes = {unit.__name__ for unit in tasks.TASKS.values()}
    names = set(tasks.TASKS)
    for path in PACKAGE.rglob("*.py"):
        if "tasks" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Name, ast.Attribute)):
                named = node.id if isinstance(node, ast.Name) else node.attr
                assert named not in classes, (path.name, named, node.lineno)
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in names, (path.name, node.value, node.lineno)


LONGEST_FUNCTION = 60  # lines, decorators and docstring included


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of each function in `source` longer than LONGEST_FUNCTION lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if node.end_lineno - first + 1 > LONGEST_FUNCTION:
                found.append((node.name, node.end_lineno - first + 1))
    return found


def test_no_function_in_the_package_is_longer_than_a_screen():
    assert long_functions("def f():\n" + "    x = 1\n" * LONGEST_FUNCTION) == [("f", LONGEST_FUNCTION + 1)]
    assert long_functions("def f():\n" + "    x = 1\n" * (LONGEST_FUNCTION - 1)) == []
    too_long = {
        f"{path.relative_to(PACKAGE)}:{name}": lines
        for path in PACKAGE.rglob("*.py")
        for name, lines in long_functions(path.read_text())
    }
    assert not too_long, f"split these (at most {LONGEST_FUNCTION} lines each): {too_long}"
