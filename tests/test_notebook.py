"""examples/quickstart.ipynb runs top to bottom in a real kernel and draws its figures inline."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
def test_quickstart_notebook_executes_and_shows_its_figures(monkeypatch):
    monkeypatch.setenv("QUICKSTART_EPISODES", "500")  # the kernel inherits it: a quicker run
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 3  # regret curves, raster, stay bars
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "bayes_optimal" in text and "agent" in text and "rewarded_rare" in text
    rows = [line.split() for line in text.splitlines() if "±" in line]  # player, mean, ±, sem
    table = {row[0]: (float(row[1]), float(row[3])) for row in rows}
    (agent, agent_sem), (bayes, bayes_sem) = table["agent"], table["bayes_optimal"]
    assert agent < table["thompson"][0] < table["random"][0]
    # on 500 episodes the agent and the Bayes-optimal player are within sampling noise, either order
    assert abs(agent - bayes) < 3 * (agent_sem**2 + bayes_sem**2) ** 0.5, (agent, bayes)
