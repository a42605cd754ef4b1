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


def test_generate_synthetic_and_sort_of_clevr(capsys, tmp_path):
    from mmgraph.datasets import load_synthetic, read_sort_of_clevr

    assert main(["generate", "synthetic", str(tmp_path / "syn"), "--images", "10", "--questions", "2"]) == 0
    assert "wrote the synthetic benchmark" in capsys.readouterr().out
    scenes, questions, _ = load_synthetic(tmp_path / "syn", "train")
    assert len(scenes) == 8 and len(questions) == 16
    assert main(["generate", "sort-of-clevr", str(tmp_path / "soc"), "--train", "4", "--test", "2"]) == 0
    train, test = read_sort_of_clevr(tmp_path / "soc" / "sort_of_clevr.pickle")
    assert len(train) == 4 and len(test) == 2
