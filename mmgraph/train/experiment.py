"""Runs: a data set, a model and a trainer from one config, and the
checkpoints they leave, loaded back for evaluation and prediction.

A run's config is a :class:`RunConfig` (YAML file + ``--set key=value``
overrides, type-checked). Its checkpoints are self-contained: they hold the
model's name and sizes, the token and answer vocabularies and the graph
builder's settings, so ``mmgraph evaluate`` and ``mmgraph predict`` need only
the checkpoint and the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

import torch
import yaml
from torch import nn

from mmgraph.errors import CheckpointError, ConfigError, InputError
from mmgraph.graph.builder import GraphBuilder, Sample
from mmgraph.graph.collate import GraphLoader
from mmgraph.graph.vocab import Vocabulary
from mmgraph.models.registry import create_model, model_kwargs_from_dataset
from mmgraph.train.checkpoint import atomic_write, load_checkpoint
from mmgraph.train.config import config_to_dict
from mmgraph.train.distributed import init_distributed, main_process_first
from mmgraph.train.seed import seed_everything
from mmgraph.train.tasks import RetrievalEvaluator, RetrievalLoss, evaluate_vqa, predict_vqa
from mmgraph.train.trainer import TrainConfig, Trainer

DATASETS = ("synthetic-vqa", "synthetic-retrieval", "sort-of-clevr", "vqa-v2", "gqa", "karpathy")
RETRIEVAL_DATASETS = ("synthetic-retrieval", "karpathy")


@dataclass
class DataConfig:
    """Which data, and how its samples become graphs."""

    dataset: Literal["synthetic-vqa", "synthetic-retrieval", "sort-of-clevr", "vqa-v2", "gqa", "karpathy"] = (
        "synthetic-vqa"
    )
    root: str = "data/synthetic"  # the data set's folder
    # Region nodes of the synthetic data sets and Sort-of-CLEVR: scene-graph objects (synthetic only), the
    # cells of a CNN's grid over the pixels, or the objects found in the pixels (flat colours; segments.py).
    # Sort-of-CLEVR has no scene graphs: anything but "segments" is its grid.
    regions: Literal["scene_graph", "pixels", "segments"] = "scene_graph"
    grid: int = 8  # pixel grid side (synthetic pixels mode, Sort-of-CLEVR)
    features: Optional[str] = None  # VQA v2 / Karpathy: the region feature file or folder
    generate: int = 0  # synthetic / Sort-of-CLEVR: generate this many images if the folder has no data
    questions_per_image: int = 10  # synthetic generation
    val_images: int = 200  # Sort-of-CLEVR: training images held out for validation
    parser: Literal["spacy", "sequential"] = "spacy"  # dependency parse (spaCy) or adjacent tokens
    # Any of spatial, knn, complete; None: spatial for objects and detections, knn for the cells of a
    # pixel grid (the spatial graph links nearly every pair of 64 cells: ~4,000 edges a question).
    region_edges: Optional[Tuple[str, ...]] = None
    knn_k: int = 8  # neighbours for knn region edges
    # The spatial graph's cut-off (fraction of the image diagonal; ReGAT's 0.5); None: every pair gets its
    # direction class (CLEVR-style "left of" holds at any distance).
    spatial_max_distance: Optional[float] = 0.5
    cross: Literal["complete", "topk", "grounded"] = "complete"  # cross-modal edges
    reverse_dep: bool = True  # also dependent -> head edges
    # Also store the data's word-region grounding (GROUNDING_EDGE), for align_weight (synthetic data).
    grounding: bool = False
    max_tokens: int = 64  # longer texts are truncated (with a warning)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"


@dataclass
class ModelSection:
    """Which model, at what size. Sizes left at None keep the model's own
    defaults (not every model has every one: a Relation Network has no
    heads); ``options`` go to ``create_model`` as further keys (values parsed
    as YAML scalars: ``variant=no_graph``, ``cond=false``)."""

    name: str = "graph_vqa"  # see mmgraph.models.list_models()
    hidden: Optional[int] = None  # node state size
    layers: Optional[int] = None  # fusion blocks
    heads: Optional[int] = None  # attention heads
    dropout: Optional[float] = None
    options: Dict[str, str] = field(default_factory=dict)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)


def task_of(dataset: str) -> str:
    return "retrieval" if dataset in RETRIEVAL_DATASETS else "vqa"


def region_edges_of(cfg: DataConfig) -> Tuple[str, ...]:
    """``cfg.region_edges``, or the default for its regions: ``("knn",)`` for pixel grid cells
    (synthetic ``regions="pixels"``, Sort-of-CLEVR), ``("spatial",)`` otherwise."""
    if cfg.region_edges is not None:
        return tuple(cfg.region_edges)
    grid = cfg.regions == "pixels" or (cfg.dataset == "sort-of-clevr" and cfg.regions != "segments")
    return ("knn",) if grid else ("spatial",)


def make_builder(cfg: DataConfig) -> GraphBuilder:
    return GraphBuilder(
        parser=cfg.parser,
        region_edges=region_edges_of(cfg),
        knn_k=cfg.knn_k,
        spatial_max_distance=cfg.spatial_max_distance,
        cross=cfg.cross,
        reverse_dep=cfg.reverse_dep,
        max_tokens=cfg.max_tokens,
        grounding=cfg.grounding,
    )


def load_split(cfg: DataConfig, split: str, builder: Optional[GraphBuilder] = None):
    """One split of the configured data set, as graphs."""
    from mmgraph import datasets

    builder = builder or make_builder(cfg)
    root = Path(cfg.root)
    if cfg.dataset in ("synthetic-vqa", "synthetic-retrieval"):
        cls = datasets.SyntheticVQA if cfg.dataset == "synthetic-vqa" else datasets.SyntheticRetrieval
        generate = (
            {"num_images": cfg.generate, "questions_per_image": cfg.questions_per_image}
            if cfg.generate
            else None
        )
        return cls(root, split, regions=cfg.regions, grid=cfg.grid, generate=generate, builder=builder)
    if cfg.dataset == "sort-of-clevr":
        generate = (
            {"train_size": cfg.generate, "test_size": max(1, cfg.generate // 10)} if cfg.generate else None
        )
        regions = "segments" if cfg.regions == "segments" else "pixels"
        return datasets.SortOfClevr(
            root,
            split,
            regions=regions,
            grid=cfg.grid,
            val_images=cfg.val_images,
            generate=generate,
            builder=builder,
        )
    if cfg.dataset == "vqa-v2":
        return datasets.VQAv2(root, split, features=cfg.features or "features", builder=builder)
    if cfg.dataset == "gqa":
        return datasets.GQA(root, split, builder=builder)
    if cfg.dataset == "karpathy":
        return datasets.KarpathyRetrieval(root, split, features=cfg.features or "features", builder=builder)
    raise ConfigError(f"unknown data set {cfg.dataset!r}; choose from {list(DATASETS)}")


def _options(model: ModelSection) -> Dict[str, Any]:
    sizes = {"hidden": model.hidden, "layers": model.layers, "heads": model.heads, "dropout": model.dropout}
    out: Dict[str, Any] = {k: v for k, v in sizes.items() if v is not None}
    for key, text in model.options.items():
        out[key] = yaml.safe_load(text) if isinstance(text, str) else text
    return out


def _plain(value: Any) -> Any:
    """JSON-like copy (tuples -> lists) for checkpoints."""
    return json.loads(json.dumps(value, default=list))


def _unplain_kwargs(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(kwargs)
    if out.get("edge_types") is not None:
        out["edge_types"] = tuple(tuple(e) for e in out["edge_types"])
    return out


def build_model(cfg: RunConfig, train_set) -> Tuple[nn.Module, Dict[str, Any]]:
    """The configured model, sized for ``train_set``; also the keyword
    arguments that rebuild it (saved in checkpoints)."""
    kwargs = {**model_kwargs_from_dataset(train_set), **_options(cfg.model)}
    return create_model(cfg.model.name, **kwargs), kwargs


def evaluator_for(task: str, builder: GraphBuilder, templates: bool = False):
    """The task's ``(model, loader, device) -> metrics``; ``templates``: VQA scores also per question
    template (:func:`~mmgraph.train.tasks.evaluate_vqa`)."""
    if task == "vqa":
        return partial(evaluate_vqa, templates=True) if templates else evaluate_vqa
    return RetrievalEvaluator(builder)


@dataclass
class RunResult:
    model: nn.Module
    history: List[Dict[str, Any]]
    test_metrics: Dict[str, float]
    out_dir: Optional[Path]


def run(cfg: RunConfig, resume: Optional[str] = None) -> RunResult:
    """Trains ``cfg``'s model on its data and scores the best checkpoint (or
    the last state without an ``out_dir``) on the test split."""
    task = task_of(cfg.data.dataset)
    dist = init_distributed()
    builder = make_builder(cfg.data)
    # Under torchrun, rank 0 generates and processes the data while the others wait for its cache.
    with main_process_first():
        train_set = load_split(cfg.data, cfg.data.train_split, builder)
        val_set = load_split(cfg.data, cfg.data.val_split, builder) if cfg.data.val_split else None
        test_set = load_split(cfg.data, cfg.data.test_split, builder) if cfg.data.test_split else None
    # Seeded before the model is made, so that its initial weights depend on the seed alone.
    seed_everything(cfg.train.seed)
    model, kwargs = build_model(cfg, train_set)
    if task == "retrieval" and cfg.train.monitor == "accuracy":
        cfg.train.monitor = "rsum"
    extra = {
        "model_name": cfg.model.name,
        "model_kwargs": _plain(kwargs),
        "encoder_defaults": ENCODER_DEFAULTS,
        "task": task,
        "vocab": train_set.vocab.to_dict(),
        "answers": None if train_set.answers is None else train_set.answers.to_dict(),
        "builder": builder.config,
    }
    trainer = Trainer(
        model,
        train_set,
        val_set,
        cfg.train,
        evaluate=evaluator_for(task, builder) if val_set is not None else None,
        extra_state=extra,
        run_config=config_to_dict(cfg),
        loss=RetrievalLoss(builder) if task == "retrieval" else None,
    )
    history = trainer.fit(resume=resume)
    out_dir = trainer.out_dir
    if out_dir is not None and (out_dir / "best.pt").exists():
        load_checkpoint(out_dir / "best.pt", model, restore_rng=False, map_location=trainer.device)
    test_metrics: Dict[str, float] = {}
    if test_set is not None:
        model.eval()
        loader = GraphLoader(test_set, batch_size=cfg.train.batch_size)
        with torch.no_grad():
            test_metrics = evaluator_for(task, builder)(model, loader, trainer.device)
        if out_dir is not None and dist.is_main:
            with atomic_write(out_dir / "test_metrics.json") as f:
                f.write(json.dumps(test_metrics, indent=1).encode())
    return RunResult(model, history, test_metrics, out_dir)


@dataclass
class Trained:
    """A model loaded from a checkpoint, with what it was trained with."""

    model: nn.Module
    config: RunConfig
    vocab: Vocabulary
    answers: Optional[Vocabulary]
    task: str
    step: int


#: The generation of :class:`~mmgraph.models.MMGraphEncoderConfig` defaults a checkpoint's
#: ``model_kwargs`` were written under (its ``extra["encoder_defaults"]``; absent: 1). A checkpoint
#: keeps only the keys its run set, so when the defaults change, :func:`load_trained` adds the old
#: ones back: 2 turned ``count``, ``intra_gate`` and ``cross_first`` on for the VQA models
#: (:data:`mmgraph.models.vqa.VQA_ENCODER_DEFAULTS`).
ENCODER_DEFAULTS = 2
_OLD_ENCODER_DEFAULTS: Dict[int, Dict[str, Any]] = {
    1: {"count": False, "intra_gate": False, "cross_first": False}
}


def _create_trained_model(extra: Dict[str, Any]) -> nn.Module:
    """The model of a checkpoint's ``extra``, with the encoder defaults it was written under."""
    name, kwargs = extra["model_name"], _unplain_kwargs(extra["model_kwargs"])
    written = int(extra.get("encoder_defaults", 1))
    old: Dict[str, Any] = {}
    for version in range(written, ENCODER_DEFAULTS):
        old.update(
            {k: v for k, v in _OLD_ENCODER_DEFAULTS[version].items() if k not in kwargs and k not in old}
        )
    if old:
        try:
            return create_model(name, **kwargs, **old)
        except ConfigError:  # a model without our encoder (relation_network, question_only, ...)
            pass
    return create_model(name, **kwargs)


def load_trained(path, map_location: str = "cpu") -> Trained:
    """Rebuilds the model of a checkpoint written by :func:`run` and loads its weights."""
    from mmgraph.train.config import config_from_dict

    state = load_checkpoint(path, restore_rng=False, map_location=map_location)
    extra = state.get("extra") or {}
    missing = [k for k in ("model_name", "model_kwargs", "vocab", "task") if k not in extra]
    if missing:
        raise CheckpointError(
            f"{path}: not a checkpoint of an mmgraph run (it lacks {missing}); load it with "
            "mmgraph.train.load_checkpoint into a model you build yourself"
        )
    model = _create_trained_model(extra)
    load_checkpoint(path, model, restore_rng=False, map_location=map_location)
    model.eval()
    config = config_from_dict(RunConfig, state.get("config") or {}, source=str(path))
    answers = None if extra.get("answers") is None else Vocabulary.from_dict(extra["answers"], str(path))
    return Trained(
        model, config, Vocabulary.from_dict(extra["vocab"], str(path)), answers, extra["task"], state["step"]
    )


def check_vocabularies(trained: Trained, dataset, path) -> None:
    """A data set whose vocabularies differ from the checkpoint's would feed
    the model the wrong ids: refuse it, saying where they differ."""
    for name, mine, theirs in (
        ("token", trained.vocab, dataset.vocab),
        ("answer", trained.answers, dataset.answers),
    ):
        if mine is None or theirs is None or mine == theirs:
            continue
        diff = [t for t in theirs.itos if t not in mine.stoi][:5]
        raise CheckpointError(
            f"{path}: the data set's {name} vocabulary ({len(theirs)} entries) differs from the checkpoint's "
            f"({len(mine)}){'; new entries: ' + str(diff) if diff else ''}. Evaluate on data processed like the "
            "training data (same folder and builder settings), or retrain"
        )


def evaluate_checkpoint(
    path,
    split: str = "test",
    data_root: Optional[str] = None,
    results: Optional[str] = None,
    templates: bool = False,
):
    """Scores a checkpoint on a split; for VQA, optionally writes the official
    results file (``[{question_id, answer}]``) and, with ``templates``, also
    scores each question template. Returns the metrics."""
    trained = load_trained(path)
    cfg = trained.config
    if data_root is not None:
        cfg.data.root = data_root
    builder = make_builder(cfg.data)
    dataset = load_split(cfg.data, split, builder)
    check_vocabularies(trained, dataset, path)
    loader = GraphLoader(dataset, batch_size=cfg.train.batch_size)
    device = torch.device("cpu")
    with torch.no_grad():
        metrics = evaluator_for(trained.task, builder, templates=templates)(trained.model, loader, device)
        if results is not None:
            if trained.task != "vqa":
                raise InputError("--results writes VQA answers; this checkpoint is a retrieval model")
            preds, ids = predict_vqa(trained.model, loader, device)
            answers = trained.answers.itos
            rows = [{"question_id": qid, "answer": answers[int(p)]} for qid, p in zip(ids, preds)]
            with atomic_write(results) as f:
                f.write(json.dumps(rows).encode())
    return metrics


def predict_question(path, question: str, image_id: str, split: str = "test", k: int = 3, data_root=None):
    """Answers a question (any text) about one image of a split with a VQA checkpoint."""
    trained = load_trained(path)
    if trained.task != "vqa":
        raise InputError(f"{path} holds a retrieval model; predict answers questions with a VQA checkpoint")
    cfg = trained.config
    if data_root is not None:
        cfg.data.root = data_root
    builder = make_builder(cfg.data)
    dataset = load_split(cfg.data, split, builder)
    check_vocabularies(trained, dataset, path)
    matches = [i for i in range(len(dataset)) if str(_scalar(dataset[i].get("image_id"))) == str(image_id)]
    if not matches:
        raise InputError(f"image {image_id!r} is not in split {split!r} of {cfg.data.root}")
    base = dataset[matches[0]]
    graph = _with_question(base, question, builder, trained.vocab)
    batch = next(iter(GraphLoader([graph], batch_size=1)))
    return trained.model.predict(batch, k=k)[0]


def _scalar(value):
    return value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value


def _with_question(base, question: str, builder: GraphBuilder, vocab: Vocabulary):
    """The graph of ``base``'s image side with ``question`` as its text."""
    from mmgraph.graph.pairs import pair_graph

    builder.vocab = vocab
    text_graph = _text_only_graph(question, builder, base)
    return pair_graph(base, text_graph)


def _text_only_graph(question: str, builder: GraphBuilder, base):
    """A graph of ``question`` over ``base``'s regions (its token side is what :func:`pair_graph` keeps)."""
    from mmgraph.graph.regions import Regions
    from mmgraph.typing import REGION

    w, h = base.image_size.view(-1).tolist()
    box = base[REGION].box * torch.tensor([w, h, w, h])
    regions = Regions(box, (w, h))
    return builder(Sample(regions, question, sample_id="question"))
