import torch

from mmgraph.train.experiment import DataConfig, ModelSection, RunConfig, run
from mmgraph.train.trainer import TrainConfig


def _config(root, seed):
    return RunConfig(
        data=DataConfig(root=str(root), generate=12, questions_per_image=3, parser="sequential"),
        model=ModelSection(name="graph_vqa", hidden=16, layers=1, heads=2),
        train=TrainConfig(epochs=1, batch_size=8, seed=seed, progress="off", device="cpu"),
    )


def test_a_run_depends_on_its_seed_alone(tmp_path):
    torch.manual_seed(1)
    a = run(_config(tmp_path, seed=3))
    torch.manual_seed(2)  # other global random state before the run
    b = run(_config(tmp_path, seed=3))
    pa = torch.cat([p.flatten() for p in a.model.parameters()])
    pb = torch.cat([p.flatten() for p in b.model.parameters()])
    assert torch.equal(pa, pb)
    untimed = [
        [{k: v for k, v in r.items() if k != "samples_per_second"} for r in h] for h in (a.history, b.history)
    ]
    assert untimed[0] == untimed[1]
    c = run(_config(tmp_path, seed=4))
    assert not torch.equal(pa, torch.cat([p.flatten() for p in c.model.parameters()]))


def test_region_edges_default_to_knn_for_pixel_grids_only():
    from mmgraph.datasets.sort_of_clevr_graphs import SortOfClevr
    from mmgraph.datasets.synthetic_graphs import SyntheticVQA
    from mmgraph.train.experiment import DataConfig, make_builder, region_edges_of

    assert region_edges_of(DataConfig()) == ("spatial",)
    assert region_edges_of(DataConfig(regions="pixels")) == ("knn",)
    assert region_edges_of(DataConfig(dataset="sort-of-clevr")) == ("knn",)
    # Objects found in the pixels get the spatial graph, as scene-graph objects do.
    assert region_edges_of(DataConfig(dataset="sort-of-clevr", regions="segments")) == ("spatial",)
    assert region_edges_of(DataConfig(regions="segments")) == ("spatial",)
    assert region_edges_of(DataConfig(regions="pixels", region_edges=("spatial",))) == ("spatial",)
    assert make_builder(DataConfig(regions="pixels")).region_edges == ("knn",)
    assert make_builder(DataConfig()).spatial_max_distance == 0.5
    assert make_builder(DataConfig(spatial_max_distance=None)).config["spatial_max_distance"] is None
    # The data sets' own default builders agree (without building any data).
    pixels = SyntheticVQA.__new__(SyntheticVQA)
    pixels.regions_mode = "pixels"
    assert pixels.default_builder().region_edges == ("knn",) and pixels.default_builder().knn_k == 8
    pixels.regions_mode = "scene_graph"
    assert pixels.default_builder().region_edges == ("spatial",)
    pixels.regions_mode = "segments"
    assert pixels.default_builder().region_edges == ("spatial",)
    soc = SortOfClevr.__new__(SortOfClevr)
    soc.regions_mode = "pixels"
    assert soc.default_builder().region_edges == ("knn",)
    soc.regions_mode = "segments"
    assert soc.default_builder().region_edges == ("spatial",)


def test_checkpoints_rebuild_with_the_encoder_defaults_they_were_written_under():
    from mmgraph.train.experiment import ENCODER_DEFAULTS, _create_trained_model

    sizes = {"vocab_size": 20, "num_answers": 5, "hidden": 16, "heads": 2}
    old = _create_trained_model({"model_name": "graph_vqa", "model_kwargs": sizes})  # no marker: generation 1
    c = old.encoder.config
    assert (c.count, c.intra_gate, c.cross_first) == (False, False, False)
    new = _create_trained_model(
        {"model_name": "graph_vqa", "model_kwargs": sizes, "encoder_defaults": ENCODER_DEFAULTS}
    )
    c = new.encoder.config
    assert (c.count, c.intra_gate, c.cross_first) == (True, True, True)
    assert set(new.state_dict()) != set(old.state_dict())  # strict loading would refuse a mix-up
    # Keys the run set win; models without our encoder build as they are.
    kept = _create_trained_model({"model_name": "graph_vqa", "model_kwargs": {**sizes, "count": True}})
    assert kept.encoder.config.count and not kept.encoder.config.intra_gate
    rn = _create_trained_model(
        {"model_name": "relation_network", "model_kwargs": {"vocab_size": 20, "num_answers": 5}}
    )
    assert type(rn).__name__ == "RelationNetwork"
