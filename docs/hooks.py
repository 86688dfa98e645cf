"""MkDocs hooks: what the documentation says of the code is generated from the code.

- `<!-- settings -->` becomes the table of every setting (key, type, default, meaning), read from the
  definitions as `python -m dist_vpg.train --help` reads them (dist_vpg.settings.describe).
- `<!-- task: NAME -->` becomes the facts of a registered task, asked of its unit: what it is (its
  module's docstring), its settings, its players, its Gymnasium ids, its pretrained agent and whether
  it has a native step.
- Images under pretrained/ and benchmarks/results/ are served from the repository, where they live;
  pages link them by their path in the repository, which the site's pages see one folder up.
"""

from __future__ import annotations

import inspect
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

from dist_vpg import config, settings, tasks

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ("pretrained/figures", "benchmarks/results")


def _value(v) -> str:
    return f"`{v!r}`" if isinstance(v, str) else f"`{str(v).lower()}`" if isinstance(v, bool) else f"`{v}`"


def settings_table(found) -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    rows += [
        f"| `{d.key}` | {d.type} | {_value(d.default)} | {d.meaning.replace('|', '&#124;')} |" for d in found
    ]
    return "\n".join(rows) + "\n"


def all_settings() -> str:
    sections, every, own = config.described()
    out = [settings_table(sections), "\n### Every task\n\n" + settings_table(every)]
    out += [f"\n### task.name={name}\n\n" + settings_table(keys) for name, keys in own.items()]
    return "\n".join(out)


def task_facts(name: str) -> str:
    unit = tasks.TASKS[name]
    doc = inspect.getdoc(inspect.getmodule(unit)) or ""
    task = tasks.make_task(unit.Settings())
    players = ", ".join(f"`{p}`" for p in task.players()) or "none"
    ids = ", ".join(f"`{i}`" for i in unit.gym_ids) or "none"
    native = "yes" if task.offers("native_state") else "no: it trains on the torch path (twopass)"
    lines = [
        doc,
        "",
        f"`task.name={name}` (`{unit.__module__}.{unit.__name__}`): {task.num_actions} actions, "
        f"{task.trials} agent steps an episode by default. Players: {players}. Gymnasium: {ids}. "
        f"Native step: {native}. Pretrained agent: "
        + (f"`pretrained/{unit.pretrained}`." if unit.pretrained else "none."),
        "",
        "Its settings (`task.name` alone gives these defaults; a key not listed is refused):",
        "",
        settings_table(settings.describe(unit.Settings, "task.")),
    ]
    return "\n".join(lines)


def on_files(files, config):  # noqa: ARG001 - the hook's signature
    for folder in ASSETS:
        for path in sorted((ROOT / folder).rglob("*.png")):
            uri = path.relative_to(ROOT).as_posix()
            files.append(File(uri, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files):  # noqa: ARG001
    markdown = markdown.replace("<!-- settings -->", all_settings())
    markdown = re.sub(r"<!-- task: (\w+) -->", lambda m: task_facts(m.group(1)), markdown)
    # Images of the repository: the page links them from where it sits in the repository (so that
    # they show where the repository is read, docs/ one folder deeper), the site one folder up.
    here = posixpath.dirname(page.file.src_uri) or "."
    in_repository = posixpath.relpath(".", posixpath.join("docs", here))
    on_site = posixpath.relpath(".", here)
    for folder in ASSETS:
        markdown = markdown.replace(f"]({in_repository}/{folder}/", f"]({posixpath.join(on_site, folder)}/")
    return markdown
