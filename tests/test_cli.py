import subprocess
import sys

import pytest

from mmgraph.cli import main


def test_quickstart_builds_and_reports(capsys, tmp_path):
    png = tmp_path / "g.png"
    assert (
        main(
            ["quickstart", "--images", "3", "--questions", "2", "--parser", "sequential", "--draw", str(png)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3 synthetic scenes, 6 questions" in out
    assert "scene-graph regions: 6 graphs" in out
    assert "pixel grid regions (8x8): 6 graphs" in out
    assert "region-spatial-region" in out and "token-dep-token" in out
    assert png.stat().st_size > 1000


@pytest.mark.spacy
def test_quickstart_with_spacy_prints_dependency_arcs(capsys):
    pytest.importorskip("spacy")
    assert main(["quickstart", "--images", "2", "--questions", "1"]) == 0
    assert "dependency arcs:" in capsys.readouterr().out


def test_help_of_every_command():
    for cmd in (["--help"], ["quickstart", "--help"]):
        result = subprocess.run([sys.executable, "-m", "mmgraph.cli", *cmd], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: mmgraph" in result.stdout


def test_bad_arguments_exit_with_usage():
    result = subprocess.run(
        [sys.executable, "-m", "mmgraph.cli", "quickstart", "--parser", "x"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr
