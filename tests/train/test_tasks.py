import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, HeteroData

from mmgraph.train.tasks import evaluate_vqa


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
