"""The exploration notebooks run top to bottom, as a reader runs them.

Each notebook is executed with nbclient on the ``python3`` kernel in a
temporary working directory; any cell error fails the test
(:class:`nbclient.exceptions.CellExecutionError` names the cell). The checks
then read the executed notebook's outputs: the figures it drew and the
numbers it printed.
"""

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip(
    "nbformat", reason="the notebook tests need nbformat (pip install -e '.[notebook]')"
)
nbclient = pytest.importorskip(
    "nbclient", reason="the notebook tests need nbclient (pip install -e '.[notebook]')"
)
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel (pip install -e '.[notebook]')")

from jupyter_client.kernelspec import NoSuchKernel  # noqa: E402  (after the skips: jupyter_client comes with nbclient)

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# Per cell, generous: the slowest cell trains a model for about a minute on a free CPU.
CELL_TIMEOUT = 900


def _needs_spacy() -> None:
    pytest.importorskip("spacy")
    from mmgraph.errors import MissingDependencyError
    from mmgraph.graph import SpacyParser

    try:
        SpacyParser()
    except MissingDependencyError as e:
        pytest.skip(str(e))


def _execute(name: str, cwd: Path):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute()
    except NoSuchKernel as e:
        pytest.skip(f"no python3 Jupyter kernel: {e} (pip install ipykernel)")
    return nb


def _outputs(nb):
    """(printed text, number of PNG figures) of every code cell together."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text.append(out["text"])
            images += "image/png" in out.get("data", {})
    return "".join(text), images


def _arc_labels(block: str) -> set:
    """The labels of the printed arcs ``head ──label──▶ dependent`` at the start of ``block``."""
    labels = set()
    for line in block.splitlines():
        match = re.search(r"─+([^─\s]+)─+▶", line)
        if match is None:
            break
        labels.add(match.group(1))
    return labels


def _no_errors(nb) -> None:
    errors = [out for c in nb.cells for out in c.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, errors


def test_committed_notebooks_hold_their_outputs():
    # Readers see the figures without running anything: the notebooks are committed executed.
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.get("execution_count") for c in code), f"{path.name} is not executed"
        _no_errors(nb)
        assert _outputs(nb)[1] >= 1, f"{path.name} has no figure"


@pytest.mark.spacy
def test_01_graphs(tmp_path):
    _needs_spacy()
    nb = _execute("01_graphs.ipynb", tmp_path)
    _no_errors(nb)
    text, images = _outputs(nb)
    assert images >= 4  # scenes, a drawn graph, the three region-edge kinds, a grounded graph
    # Every spatial edge has its reverse, with the opposite class.
    edges, with_reverse, opposite = map(
        int, re.search(r"(\d+) spatial edges; (\d+) have a reverse edge; (\d+) of those", text).groups()
    )
    assert edges > 0 and edges == with_reverse == opposite
    # The real parse has linguistic labels; the sequential one only "seq".
    spacy_part, sequential_part = text.split("spaCy:\n")[1].split("sequential:\n")
    spacy_labels, sequential_labels = _arc_labels(spacy_part), _arc_labels(sequential_part)
    assert {"det", "amod"} <= spacy_labels and "seq" not in spacy_labels
    assert sequential_labels == {"seq"}
    cross = re.search(r"cross edges: \{'complete': (\d+), 'topk': (\d+), 'grounded': (\d+)\}", text)
    complete, topk, grounded = map(int, cross.groups())
    assert complete > topk > grounded > 0


@pytest.mark.slow
@pytest.mark.spacy
def test_02_train_vqa(tmp_path):
    _needs_spacy()
    nb = _execute("02_train_vqa.ipynb", tmp_path)
    _no_errors(nb)
    text, images = _outputs(nb)
    assert images >= 4  # the training curves and three attention figures
    majority = float(re.search(r"always answering '[^']+': ([\d.]+)", text).group(1))
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)", text).group(1))
    # Better than always giving the most frequent answer: the model learned from the graphs.
    assert majority < accuracy <= 1.0


def test_03_layers_in_your_model(tmp_path):
    nb = _execute("03_layers_in_your_model.ipynb", tmp_path)
    _no_errors(nb)
    text, images = _outputs(nb)
    assert images >= 1
    runs = re.findall(r"(\d+) steps; mean loss of the first 5: ([\d.]+), of the last 5: ([\d.]+)", text)
    assert len(runs) == 2  # (a) the plain module, (b) the to_hetero GNN
    for steps, first, last in runs:
        assert int(steps) > 10 and float(last) < 0.8 * float(first)
