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
