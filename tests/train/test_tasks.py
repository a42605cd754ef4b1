import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, HeteroData

from mmgraph.train.tasks import evaluate_vqa
from mmgraph.typing import GROUNDING_EDGE


class _Echo(nn.Module):
    """Answers each graph with the answer id it stores as ``guess``."""

    def forward(self, batch):
        return nn.functional.one_hot(batch.guess.view(-1), 4).float()


def _graph(y, guess, family, template):
    data = HeteroData()
    data["region"].num_nodes = 1
    data.y = torch.tensor([y])
    data.guess = torch.tensor([guess])
    data.family = family
    data.template = template
    return data


# (answer, prediction, family, template)
_ROWS = [
    (0, 0, "relational", "closest_query_color"),
    (1, 2, "relational", "closest_query_color"),
    (2, 2, "relational", "relate_exist"),
    (3, 3, "counting", "count"),
    (1, 1, "counting", "count"),
]


def _loader(batch_size):
    graphs = [_graph(*row) for row in _ROWS]
    return [Batch.from_data_list(graphs[i : i + batch_size]) for i in range(0, len(graphs), batch_size)]


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_evaluate_vqa_reports_templates_on_request(batch_size):
    out = evaluate_vqa(_Echo(), _loader(batch_size), torch.device("cpu"), templates=True)
    assert out["accuracy"] == pytest.approx(4 / 5)
    assert out["accuracy/relational"] == pytest.approx(2 / 3)
    assert out["accuracy/counting"] == 1.0
    assert out["accuracy/template/closest_query_color"] == pytest.approx(1 / 2)
    assert out["accuracy/template/relate_exist"] == 1.0
    assert out["accuracy/template/count"] == 1.0
    assert not any(key.startswith("accuracy/template/") for key in evaluate_vqa(_Echo(), _loader(2), "cpu"))


def test_evaluate_vqa_reads_one_graph_strings_as_one_name():
    # One HeteroData (not a Batch) holds its family and template as plain strings.
    graph = _graph(2, 2, "relational", "relate_exist")
    out = evaluate_vqa(_Echo(), [graph], torch.device("cpu"), templates=True)
    assert out == {"accuracy": 1.0, "accuracy/relational": 1.0, "accuracy/template/relate_exist": 1.0}


class _Pointing(_Echo):
    """An echo model with a pointer channel: every word puts 0.75 of its weight on region 0 and
    0.25 on region 1 (averaged over two heads), as ``forward_features(return_pointer=True)`` gives it."""

    def __init__(self):
        super().__init__()
        self.encoder = _PointingEncoder()

    def forward_head(self, features):
        return self(features.batch)


class _PointingEncoder(nn.Module):
    config = type("Config", (), {"pointer": True})()

    def forward_features(self, batch, return_pointer=False):
        tokens, regions = batch["token"].num_nodes, batch["region"].num_nodes
        token_batch = batch["token"].get("batch", torch.zeros(tokens, dtype=torch.long))
        region_batch = batch["region"].get("batch", torch.zeros(regions, dtype=torch.long))
        pairs = [(t, r) for t in range(tokens) for r in range(regions) if token_batch[t] == region_batch[r]]
        edge_index = torch.tensor(pairs).t()
        first = torch.tensor([r == int((region_batch < region_batch[r]).sum()) for _, r in pairs])
        alpha = torch.where(first, 0.75, 0.25).view(-1, 1) * torch.ones(1, 2)
        return type("Features", (), {"pointer": [(edge_index, alpha)], "batch": batch})()


def _grounded_graph(y, guess, family, named):
    data = _graph(y, guess, family, "t")
    data["region"].num_nodes = 2
    data["token"].num_nodes = 3
    data[GROUNDING_EDGE].edge_index = torch.tensor(named, dtype=torch.long).reshape(-1, 2).t()
    return data


@pytest.mark.parametrize("batch_size", [1, 3])
def test_evaluate_vqa_scores_where_a_pointer_model_points(batch_size):
    # Graph 0: word 0 names region 0 (mass 0.75), word 1 names both (1.0). Graph 1: word 2 names
    # region 1 (0.25). Graph 2 has no grounded word.
    graphs = [
        _grounded_graph(0, 0, "relational", [(0, 0), (1, 0), (1, 1)]),
        _grounded_graph(1, 1, "counting", [(2, 1)]),
        _grounded_graph(2, 1, "counting", []),
    ]
    loader = [Batch.from_data_list(graphs[i : i + batch_size]) for i in range(0, 3, batch_size)]
    out = evaluate_vqa(_Pointing(), loader, torch.device("cpu"))
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["grounding"] == pytest.approx((0.75 + 1.0 + 0.25) / 3)
    assert out["grounding/relational"] == pytest.approx(0.875)
    assert out["grounding/counting"] == pytest.approx(0.25)
    # No grounding in the data, or no pointer in the model: no grounding score.
    plain = [_graph(0, 0, "counting", "t")]
    assert "grounding" not in evaluate_vqa(_Pointing(), plain, "cpu")
    assert "grounding" not in evaluate_vqa(_Echo(), loader, "cpu")
