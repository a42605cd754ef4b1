import subprocess
import sys

import pytest

from mmgraph.cli import main


def test_quickstart_runs_the_main_job(capsys, tmp_path):
    out = tmp_path / "qs"
    args = ["quickstart", "--out", str(out), "--images", "20", "--questions", "3", "--epochs", "1"]
    args += ["--parser", "sequential", "--hidden", "16", "--layers", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    for step in (
        "[1/4] generate",
        "[2/4] build graphs",
        "[3/4] train a graph VQA",
        "[4/4] train a graph retrieval",
    ):
        assert step in text
    assert "test accuracy" in text and "question-only baseline" in text
    assert "image->text R@1" in text and "hard negatives" in text
    assert (out / "graph.png").stat().st_size > 1000
    assert (out / "vqa" / "best.pt").exists() and (out / "retrieval" / "best.pt").exists()
    # A second run reuses the generated data.
    assert main(args + ["--skip-retrieval"]) == 0
    assert "exists; using it" in capsys.readouterr().out


@pytest.mark.spacy
def test_quickstart_with_spacy_prints_dependency_arcs(capsys, tmp_path):
    pytest.importorskip("spacy")
    args = ["quickstart", "--out", str(tmp_path), "--images", "10", "--questions", "2", "--epochs", "1"]
    assert main(args + ["--hidden", "16", "--layers", "1", "--skip-retrieval"]) == 0
    assert "-det->" in capsys.readouterr().out


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch VQA run on a tiny generated set (the sequential parser keeps it fast)."""
    root = tmp_path_factory.mktemp("cli")
    data, out = root / "data", root / "run"
    args = [
        "train",
        "--data", str(data),
        "--out", str(out),
        "--device", "cpu",
        "--set", "data.generate=12",
        "--set", "data.questions_per_image=3",
        "--set", "data.parser=sequential",
        "--set", "model.hidden=32",
        "--set", "model.layers=1",
        "--set", "train.epochs=2",
        "--set", "train.batch_size=8",
        "--set", "train.progress=off",
    ]  # fmt: skip
    assert main(args) == 0
    return data, out


def test_train_writes_a_run(trained, capsys):
    _, out = trained
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt", "test_metrics.json"):
        assert (out / name).exists(), name
    text = (out / "config.yaml").read_text()
    assert "parser: sequential" in text and "hidden: 32" in text


def test_train_refuses_unknown_keys(capsys, tmp_path):
    assert main(["train", "--set", "train.epochz=3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "epochz" in err and "epochs" in err


def test_evaluate_writes_official_results(trained, capsys, tmp_path):
    import json

    _, out = trained
    results = tmp_path / "answers.json"
    assert main(["evaluate", str(out / "best.pt"), "--split", "val", "--results", str(results)]) == 0
    assert "accuracy" in capsys.readouterr().out
    rows = json.loads(results.read_text())
    assert rows and set(rows[0]) == {"question_id", "answer"}
    # --templates adds one accuracy per question template; without it there is none.
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", str(out / "best.pt"), "--split", "val", "--json", str(metrics)]) == 0
    assert not any("/template/" in k for k in json.loads(metrics.read_text()))
    assert (
        main(["evaluate", str(out / "best.pt"), "--split", "val", "--templates", "--json", str(metrics)]) == 0
    )
    per_template = {k: v for k, v in json.loads(metrics.read_text()).items() if "/template/" in k}
    assert per_template and all(0.0 <= v <= 1.0 for v in per_template.values())
    assert "accuracy/template/" in capsys.readouterr().out


def test_evaluate_refuses_a_corrupt_checkpoint(trained, capsys, tmp_path):
    _, out = trained
    bad = tmp_path / "bad.pt"
    bad.write_bytes((out / "best.pt").read_bytes()[:1000])
    assert main(["evaluate", str(bad)]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_predict_answers_a_new_question(trained, capsys):
    from mmgraph.datasets import load_synthetic

    data, out = trained
    scenes, _, _ = load_synthetic(data, "test")
    image_id = scenes[0]["image_id"]
    assert main(["predict", str(out / "best.pt"), "--image", image_id, "--question", "is there a cube?"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Q: is there a cube?" and len(lines) == 4


def test_inspect_draws_a_png(trained, tmp_path, capsys):
    data, _ = trained
    png = tmp_path / "g.png"
    assert main(["inspect", str(data), "--parser", "sequential", "--index", "1", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000


def test_train_under_torchrun_with_two_processes(tmp_path):
    """The README's distributed command: rank 0 prepares the data, both train, only rank 0 reports."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", port]
    args += ["-m", "mmgraph.cli", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    for setting in (
        "data.generate=16",
        "data.questions_per_image=2",
        "data.parser=sequential",
        "model.hidden=16",
        "model.layers=1",
        "train.epochs=1",
        "train.batch_size=4",
        "train.device=cpu",
    ):
        args += ["--set", setting]
    result = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("training graph_vqa") == 1
    assert (tmp_path / "run" / "best.pt").exists()


def test_resume_refuses_another_models_checkpoint(trained, capsys, tmp_path):
    _, out = trained
    args = ["train", "--data", str(trained[0]), "--out", str(tmp_path), "--resume", str(out / "last.pt")]
    args += ["--model", "no_graph_vqa", "--set", "data.parser=sequential", "--set", "model.hidden=32"]
    args += ["--set", "model.layers=1", "--set", "train.progress=off"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model_name" in err and "graph_vqa" in err and "no_graph_vqa" in err


def test_evaluation_refuses_data_with_another_vocabulary(trained):
    from types import SimpleNamespace

    from mmgraph.errors import CheckpointError
    from mmgraph.graph.vocab import Vocabulary
    from mmgraph.train.experiment import check_vocabularies, load_trained

    _, out = trained
    model = load_trained(out / "best.pt")
    other = SimpleNamespace(vocab=Vocabulary(["zebra", *model.vocab.itos[3:]]), answers=model.answers)
    with pytest.raises(CheckpointError, match="token vocabulary.*differs.*zebra"):
        check_vocabularies(model, other, out / "best.pt")
    check_vocabularies(model, SimpleNamespace(vocab=model.vocab, answers=model.answers), out / "best.pt")
