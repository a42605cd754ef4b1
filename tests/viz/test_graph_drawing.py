import matplotlib
import networkx as nx
import pytest
import torch

from mmgraph.errors import InputError
from mmgraph.graph import GraphBuilder, Sample, regions_from_detections
from mmgraph.typing import DEP_EDGE, REGION, SPATIAL_EDGE, TOKEN, TOKEN_TO_REGION
from mmgraph.viz import draw_graph, to_networkx

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def data():
    boxes = torch.tensor([[10.0, 10.0, 60.0, 60.0], [70.0, 20.0, 120.0, 80.0], [20.0, 70.0, 50.0, 110.0]])
    regions = regions_from_detections(boxes, torch.randn(3, 4), (128, 128))
    builder = GraphBuilder(parser="sequential")
    text = "is the cube left of the sphere"
    builder.fit_vocab([text])
    return builder(Sample(regions, text, "viz"))


def test_to_networkx_keeps_every_node_and_edge(data):
    g = to_networkx(data)
    assert isinstance(g, nx.MultiDiGraph)
    assert g.number_of_nodes() == data[REGION].num_nodes + data[TOKEN].num_nodes
    assert g.number_of_edges() == sum(data[et].edge_index.size(1) for et in data.edge_types)
    assert g.nodes[(TOKEN, 2)]["word"] == "cube"
    # A dependency edge keeps its label id, a spatial edge its class.
    h, d = data[DEP_EDGE].edge_index[:, 0].tolist()
    assert any(
        e["edge_type"] == int(data[DEP_EDGE].edge_type[0])
        for e in g.get_edge_data((TOKEN, h), (TOKEN, d)).values()
    )
    s, t = data[SPATIAL_EDGE].edge_index[:, 0].tolist()
    assert g.get_edge_data((REGION, s), (REGION, t))[0]["relation"] == "spatial"


def test_draw_graph_draws_boxes_arcs_and_cross_edges(data, tmp_path):
    image = torch.rand(3, 128, 128)
    fig = draw_graph(data, image=image, edge_types=(SPATIAL_EDGE, DEP_EDGE, TOKEN_TO_REGION))
    ax_img, ax_txt = fig.axes
    assert len(ax_img.images) == 1
    assert len([p for p in ax_img.patches if type(p).__name__ == "Rectangle"]) == 3
    assert [t.get_text() for t in ax_txt.texts if t.get_text() in data.tokens] == data.tokens
    assert len(fig.artists) == data[TOKEN_TO_REGION].edge_index.size(1)
    path = tmp_path / "g.png"
    fig.savefig(path)
    assert path.stat().st_size > 1000


def test_batches_are_refused(data):
    from torch_geometric.data import Batch

    batch = Batch.from_data_list([data, data])
    with pytest.raises(InputError, match="batch.get_example"):
        to_networkx(batch)
