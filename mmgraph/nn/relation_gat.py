"""Relation-aware multi-head graph attention (ReGAT-style)."""

from __future__ import annotations

from itertools import repeat
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch.nn.parameter import UninitializedParameter
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn.aggr import SumAggregation
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.typing import Adj, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, to_edge_index

from mmgraph.errors import InputError
from mmgraph.nn import scatter
from mmgraph.nn.scatter import edge_weighted_sum, scatter_softmax, scatter_sum
from mmgraph.typing import OptTensor, TensorOrPair

__all__ = ["RelationGATConv"]

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class RelationGATConv(MessagePassing):
    r"""Relation-aware graph attention, after the relation encoder of
    `"Relation-Aware Graph Attention Network for Visual Question Answering"
    <https://arxiv.org/abs/1903.12314>`_ (ReGAT, Li et al. 2019), written as a
    GAT layer (`Veličković et al. 2018 <https://arxiv.org/abs/1710.10903>`_)
    whose messages, attention logits, geometry term and attention vector depend
    on the edge's relation class, its box geometry and a per-graph condition
    (the question):

    .. math::
        \mathbf{m}_{ij}^{h} &= \mathbf{W}_{r_{ij}}^{h}\mathbf{x}_j + \mathbf{b}_{r_{ij}}^{h},
        \qquad \mathbf{W}_r = \sum_{b=1}^{B} a_{rb}\,\mathbf{V}_b

        e_{ij}^{h} &= \mathrm{LeakyReLU}\Big(
            \big(\mathbf{a}^{h} + \mathbf{U}^{h}\mathbf{q}_{g}\big)^{\top}\mathbf{m}_{ij}^{h}
            + \mathbf{d}^{h\top}\mathbf{x}_i + c_{r_{ij}}^{h}
            + \mathbf{a}_{\mathrm{geo}}^{h\top}\,\mathrm{ReLU}(\mathbf{G}^{h}\mathbf{g}_{ij})\Big)

        \alpha_{ij}^{h} &= \operatorname{softmax}_{j \in \mathcal{N}(i)} e_{ij}^{h},
        \qquad \mathbf{x}_i^{\prime} = \big\Vert_{h=1}^{H}
            \sum_{j \in \mathcal{N}(i)} \alpha_{ij}^{h}\,\mathbf{m}_{ij}^{h}

    where :math:`r_{ij}` is the relation class of edge :math:`j \to i`,
    :math:`\mathbf{g}_{ij}` its ``edge_attr`` (relative box geometry) and
    :math:`\mathbf{q}_g` the condition vector of the graph :math:`g` that
    holds both nodes.

    How the parts map onto ReGAT, and what is kept small:

    * **Relation-specific messages.** ReGAT uses one matrix per edge direction
      and a bias :math:`\mathbf{b}_{\mathrm{lab}(i,j)}` per label. Our edge
      types already encode direction in the label (``inside`` vs ``cover``,
      dependency labels and their reverse ids), so by default
      (``num_bases=None``) all relations share :math:`\mathbf{W}` and differ
      by the per-relation bias :math:`\mathbf{b}_r` and logit :math:`c_r`:
      :math:`O(R \cdot F_{out})` extra parameters. With ``num_bases=B``,
      :math:`\mathbf{W}_r` is a learned mix of :math:`B` shared matrices
      (basis decomposition of `Schlichtkrull et al. 2018
      <https://arxiv.org/abs/1703.06103>`_), :math:`B \cdot F_{in} F_{out}
      + R \cdot B` parameters instead of :math:`R \cdot F_{in} F_{out}`.
    * **Geometry-aware attention.** ReGAT multiplies the softmax numerator by
      :math:`\max(0, \mathbf{w}^\top f(\mathbf{g}_{ij}))`; we add a learned
      projection of the geometry to the logit instead (the same factor in log
      space), which never zeroes all of a node's edges and so keeps the
      softmax defined.
    * **Question-adaptive attention.** ReGAT concatenates the question vector
      to every node before the attention. Here it shifts the attention vector
      :math:`\mathbf{a}^h` by :math:`\mathbf{U}^h\mathbf{q}_g`, which changes
      which neighbours :math:`j` (and which relations, through
      :math:`\mathbf{b}_r`) a node prefers; a term that depended on the
      target :math:`i` alone would cancel in the softmax.
    * Target-node term :math:`\mathbf{d}^{h\top}\mathbf{x}_i` is GAT's
      :math:`\mathbf{a}_{dst}^\top\mathbf{W}\mathbf{x}_i` folded into one
      vector (the same family of functions), so source and target may have
      different sizes without a shared transform.

    Args:
        in_channels (int or tuple): Size of each input sample, ``-1`` for a
            lazy size, or a tuple ``(F_src, F_dst)`` for bipartite graphs.
        out_channels (int): Size of each output sample per head.
        num_relations (int): Number of relation classes; ``edge_type`` takes
            values in ``0 .. num_relations - 1``.
        heads (int, optional): Number of attention heads. (default: :obj:`1`)
        concat (bool, optional): Concatenate the heads (``True``) or average
            them (``False``). (default: :obj:`True`)
        edge_dim (int, optional): Size of ``edge_attr`` (e.g.
            :data:`~mmgraph.typing.GEOMETRY_DIM`); ``None`` ignores edge
            features. (default: :obj:`None`)
        cond_dim (int, optional): Size of the per-graph condition ``cond``
            (``-1`` for lazy); ``None`` switches conditioning off.
            (default: :obj:`None`)
        dropout (float, optional): Dropout on the attention weights.
            (default: :obj:`0.0`)
        negative_slope (float, optional): LeakyReLU slope. (default: :obj:`0.2`)
        add_self_loops (bool, optional): Add an edge :math:`i \to i` to every
            node (existing self-loops are replaced); self-loops get their own
            learned relation class and zero ``edge_attr``. Only for edges
            within one node type. (default: :obj:`False`)
        bias (bool, optional): Learn an additive output bias. (default: :obj:`True`)
        num_bases (int, optional): Use relation-specific message matrices
            through this many bases (see above); ``None`` shares one matrix.
            (default: :obj:`None`)
        memory_efficient (bool, optional): Compute the geometry term of the
            logits in chunks of edges under activation checkpointing, and sum
            the messages without materialising them (see
            :meth:`aggregate_fused`), so that per edge only ``[E, heads]``
            values are kept for backward instead of ``[E, heads, F_out]``
            ones. Edges that fit in one chunk of
            :data:`~mmgraph.nn.scatter.EDGE_CHUNK_BYTES` keep their geometry's
            hidden layer and their messages (at most that many bytes each):
            on so few edges recomputing and chunking cost more time than the
            memory is worth.
            It computes the same numbers as :meth:`propagate` with
            :meth:`message`, which still runs where PyG needs it: explain
            mode, message/aggregate hooks, another ``aggr`` or ``flow``.
            (default: :obj:`True`)
        cond_geometry (bool, optional): Condition the geometry term on
            ``cond`` as well: :math:`\mathbf{a}_{\mathrm{geo}}^{h}` becomes
            :math:`\mathbf{a}_{\mathrm{geo}}^{h} + \mathbf{U}_{\mathrm{geo}}^{h}\mathbf{q}_g`,
            so that the question decides which geometry a node prefers ("the
            object closest to" and "furthest from" want opposite ones); the
            plain condition cannot, as it only shifts the message term.
            :math:`\mathbf{U}_{\mathrm{geo}}` starts at zero, so the layer
            starts as the unconditioned one. Needs ``edge_dim`` and
            ``cond_dim``. (default: :obj:`False`)
        **kwargs (optional): Further arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_{s}), (|\mathcal{V}_t|, F_{t}))`,
          edge indices :math:`(2, |\mathcal{E}|)` (source, target) or a sparse
          adjacency ``adj_t`` of size :math:`(|\mathcal{V}_t|, |\mathcal{V}_s|)`
          whose integer values, if any, are the relation classes,
          edge types :math:`(|\mathcal{E}|)` *(optional)*,
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*,
          condition :math:`(G, F_{cond})` *(optional)*,
          batch :math:`(|\mathcal{V}|)` or a pair of them *(optional)*
        - **output:** node features :math:`(|\mathcal{V}_t|, H \cdot F_{out})`
          or :math:`(|\mathcal{V}_t|, F_{out})` if ``concat=False``; with
          ``return_attention_weights`` also ``(edge_index, alpha)`` of
          sizes :math:`(2, |\mathcal{E}|)` and :math:`(|\mathcal{E}|, H)`.
    """

    def __init__(
        self,
        in_channels: Union[int, Tuple[int, int]],
        out_channels: int,
        num_relations: int,
        heads: int = 1,
        concat: bool = True,
        edge_dim: Optional[int] = None,
        cond_dim: Optional[int] = None,
        dropout: float = 0.0,
        negative_slope: float = 0.2,
        add_self_loops: bool = False,
        bias: bool = True,
        num_bases: Optional[int] = None,
        memory_efficient: bool = True,
        cond_geometry: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        if num_relations < 1:
            raise InputError(f"RelationGATConv: num_relations must be >= 1 (got {num_relations}).")
        if num_bases is not None and num_bases < 1:
            raise InputError(f"RelationGATConv: num_bases must be >= 1 or None (got {num_bases}).")
        if cond_geometry and (edge_dim is None or cond_dim is None):
            raise InputError(
                "RelationGATConv: cond_geometry=True conditions the geometry term on cond; it needs both "
                f"edge_dim and cond_dim (got edge_dim={edge_dim}, cond_dim={cond_dim})."
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_relations = num_relations
        self.heads = heads
        self.concat = concat
        self.edge_dim = edge_dim
        self.cond_dim = cond_dim
        self.dropout = dropout
        self.negative_slope = negative_slope
        self.add_self_loops = add_self_loops
        self.num_bases = num_bases
        self.memory_efficient = memory_efficient
        self.cond_geometry = cond_geometry

        in_src, in_dst = (in_channels, in_channels) if isinstance(in_channels, int) else in_channels
        # Self-loops get a relation class of their own, after the user's ones.
        num_rel_total = num_relations + int(add_self_loops)
        num_mats = num_bases or 1
        self.lin_src = Linear(
            in_src, num_mats * heads * out_channels, bias=False, weight_initializer="glorot"
        )
        self.lin_dst = Linear(in_dst, heads, bias=False, weight_initializer="glorot")
        self.att_src = Parameter(torch.empty(1, heads, out_channels))
        self.rel_att = Parameter(torch.empty(num_rel_total, heads))
        self.rel_bias = Parameter(torch.empty(num_rel_total, heads, out_channels))
        if num_bases is not None:
            self.comp = Parameter(torch.empty(num_rel_total, num_bases))
        else:
            self.register_parameter("comp", None)
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, heads * out_channels, bias=True, weight_initializer="glorot")
            self.att_edge = Parameter(torch.empty(1, heads, out_channels))
        else:
            self.lin_edge = None
            self.register_parameter("att_edge", None)
        if cond_dim is not None:
            self.lin_cond = Linear(cond_dim, heads * out_channels, bias=False, weight_initializer="glorot")
        else:
            self.lin_cond = None
        if cond_geometry:
            self.lin_cond_geo = Linear(
                cond_dim, heads * out_channels, bias=False, weight_initializer="glorot"
            )
        else:
            self.lin_cond_geo = None
        if bias:
            self.bias = Parameter(torch.empty(heads * out_channels if concat else out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin_src.reset_parameters()
        self.lin_dst.reset_parameters()
        glorot(self.att_src)
        # Relations start neutral and learn their differences.
        zeros(self.rel_att)
        zeros(self.rel_bias)
        if self.comp is not None:
            glorot(self.comp)
        if self.lin_edge is not None:
            self.lin_edge.reset_parameters()
            glorot(self.att_edge)
        if self.lin_cond is not None:
            self.lin_cond.reset_parameters()
        if self.lin_cond_geo is not None:
            if isinstance(self.lin_cond_geo.weight, UninitializedParameter):
                self.lin_cond_geo.reset_parameters()  # lazy cond_dim: glorot once the size is known
            else:
                zeros(self.lin_cond_geo.weight)  # starts as the unconditioned layer
        zeros(self.bias)

    def forward(
        self,
        x: TensorOrPair,
        edge_index: Adj,
        edge_type: OptTensor = None,
        edge_attr: OptTensor = None,
        cond: OptTensor = None,
        batch: Optional[TensorOrPair] = None,
        return_attention_weights: Optional[bool] = None,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
        r"""Runs the layer.

        Args:
            x (torch.Tensor or (torch.Tensor, torch.Tensor)): Node features, or
                ``(x_src, x_dst)`` for bipartite edges.
            edge_index (torch.Tensor, torch.sparse.Tensor or SparseTensor):
                Edges ``[2, E]`` as (source, target), or the transposed
                adjacency ``adj_t`` ``[N_dst, N_src]`` (PyG's convention).
                Integer values of a sparse adjacency are read as
                ``edge_type`` when that is not given; ``edge_type`` and
                ``edge_attr`` passed with a sparse adjacency must follow its
                (coalesced, row-major) order of non-zeros.
            edge_type (torch.Tensor, optional): Relation class per edge
                ``[E]``; all ``0`` when not given. (default: :obj:`None`)
            edge_attr (torch.Tensor, optional): Edge features ``[E, edge_dim]``
                (used when the layer has ``edge_dim``). (default: :obj:`None`)
            cond (torch.Tensor, optional): Per-graph condition ``[G, cond_dim]``
                (used when the layer has ``cond_dim``). (default: :obj:`None`)
            batch (torch.Tensor or pair, optional): Graph id of every node, or
                ``(batch_src, batch_dst)``; needed with ``cond`` when ``G > 1``.
                (default: :obj:`None`)
            return_attention_weights (bool, optional): If set (to any value,
                as in PyG), also return ``(edge_index, alpha)``: the edges
                actually used (with self-loops; in the sparse adjacency's order)
                and the weights ``[E, heads]``. (default: :obj:`None`)
        """
        H, C = self.heads, self.out_channels
        x_src, x_dst = (x, x) if isinstance(x, Tensor) else x
        if x_dst is None:
            raise InputError("RelationGATConv: target node features are None; pass (x_src, x_dst).")
        num_src, num_dst = x_src.size(0), x_dst.size(0)
        edge_index, edge_type, edge_attr = self._edge_list(edge_index, edge_type, edge_attr, num_src, num_dst)
        edge_type = self._check_edges(edge_index, edge_type, edge_attr)
        if self.add_self_loops:
            edge_index, edge_type, edge_attr = self._with_self_loops(
                edge_index, edge_type, edge_attr, min(num_src, num_dst)
            )

        num_mats = self.num_bases or 1
        h_src = self.lin_src(x_src).view(-1, num_mats, H, C)  # [N_src, B, H, C]
        alpha_dst = self.lin_dst(x_dst)  # [N_dst, H]

        # The attention vector, one per graph when conditioned.
        att = self.att_src  # [1, H, C]
        graph_src = None
        if self.lin_cond is not None and cond is not None:
            att = att + self.lin_cond(cond).view(-1, H, C)  # [G, H, C]
            graph_src = self._graph_of_sources(batch, num_src, cond.size(0))
        att_node = att if graph_src is None else att.index_select(0, graph_src)
        alpha_src = (h_src * att_node.unsqueeze(1)).sum(-1)  # [N_src, B, H]
        # a_g . b_r for every (graph, relation): the relation bias's share of the logit.
        alpha_rel = torch.einsum("ghc,rhc->grh", att, self.rel_bias).reshape(-1, H)  # [G * R, H]
        # The geometry's attention vector, one per graph with cond_geometry.
        att_geo = None
        if self.lin_cond_geo is not None and cond is not None and edge_attr is not None:
            att_geo = self.att_edge + self.lin_cond_geo(cond).view(-1, H, C)  # [G, H, C]

        alpha = self.edge_updater(
            edge_index,
            alpha=(alpha_src, alpha_dst),
            graph=(graph_src, None),
            alpha_rel=alpha_rel,
            edge_type=edge_type,
            edge_attr=edge_attr,
            att_geo=att_geo,
            size=(num_src, num_dst),
        )
        if self._can_fuse():
            out = self.aggregate_fused(h_src, alpha, edge_index, edge_type, num_dst)  # [N_dst, H, C]
        else:
            out = self.propagate(
                edge_index, h=(h_src, None), alpha=alpha, edge_type=edge_type, size=(num_src, num_dst)
            )  # [N_dst, H, C]
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if self.bias is not None:
            out = out + self.bias
        if return_attention_weights is not None:
            return out, (edge_index, alpha)
        return out

    def edge_update(
        self,
        alpha_j: Tensor,
        alpha_i: Tensor,
        graph_j: OptTensor,
        alpha_rel: Tensor,
        edge_type: Tensor,
        edge_attr: OptTensor,
        att_geo: OptTensor,
        index: Tensor,
        dim_size: Optional[int],
    ) -> Tensor:
        if self.comp is None:
            logit = alpha_j[:, 0]  # [E, H]
        else:
            logit = (self.comp.index_select(0, edge_type).unsqueeze(-1) * alpha_j).sum(1)  # [E, H]
        rel_row = edge_type if graph_j is None else graph_j * self.rel_att.size(0) + edge_type
        logit = logit + alpha_i + self.rel_att.index_select(0, edge_type) + alpha_rel.index_select(0, rel_row)
        if self.lin_edge is not None and edge_attr is not None:
            logit = logit + self._geometry_logit(edge_attr, att_geo, graph_j)
        logit = F.leaky_relu(logit, self.negative_slope)
        alpha = scatter_softmax(logit, index, dim_size)
        return F.dropout(alpha, p=self.dropout, training=self.training)

    def message(self, h_j: Tensor, alpha: Tensor, edge_type: Tensor) -> Tensor:
        if self.comp is None:
            msg = h_j[:, 0]  # [E, H, C]
        else:
            weight = self.comp.index_select(0, edge_type).view(-1, self.num_bases, 1, 1)  # [E, B, 1, 1]
            msg = (weight * h_j).sum(1)  # [E, H, C]
        msg = msg + self.rel_bias.index_select(0, edge_type)
        return alpha.unsqueeze(-1) * msg

    def aggregate_fused(
        self, h_src: Tensor, alpha: Tensor, edge_index: Tensor, edge_type: Tensor, num_dst: int
    ) -> Tensor:
        r"""The sum over edges of :meth:`message`, without its ``[E, heads, F_out]`` messages
        where those would span several chunks of edges.

        Edges whose messages fit in one chunk of
        :data:`~mmgraph.nn.scatter.EDGE_CHUNK_BYTES` (a batch of small scene
        graphs: a thousand edges) get their messages computed at once and kept
        for backward, at most that many bytes: on such small tensors the
        chunked path's extra operations cost more time than the memory is
        worth (as for the geometry term in :meth:`_geometry_logit`).

        Beyond one chunk the message :math:`\alpha_{ij}^{h}(\sum_b a_{rb}\mathbf{V}_b^{h}\mathbf{x}_j
        + \mathbf{b}_r^{h})` splits into a weighted sum of source rows,
        :func:`~mmgraph.nn.scatter.edge_weighted_sum` with weights
        :math:`\alpha_{ij}^{h} a_{rb}` (chunked, nothing per edge kept but the
        weights), and the relation biases weighted by the summed attention
        each target gives each relation, :math:`\sum_r A_{irh}\mathbf{b}_r^{h}`
        with :math:`A` of size ``[N_dst, R, heads]``. Where the edges are
        fewer than that (:math:`E \cdot F_{out} \le N_{dst} R`: many relation
        classes over few edges, as the 94 dependency classes over a
        sentence's arcs), the biases are weighted per edge instead,
        ``[E, heads, F_out]`` values that are then no more than :math:`A`'s.

        Args:
            h_src (torch.Tensor): Transformed sources ``[N_src, B, heads, F_out]``.
            alpha (torch.Tensor): Attention weights ``[E, heads]``.
            edge_index (torch.Tensor): Edges ``[2, E]`` (source, target).
            edge_type (torch.Tensor): Relation class per edge ``[E]``.
            num_dst (int): Number of target nodes.

        Returns:
            ``[N_dst, heads, F_out]``, what :meth:`propagate` returns.
        """
        B, H, C = h_src.size(1), self.heads, self.out_channels
        src, dst = edge_index[0], edge_index[1]
        num_edges, num_rel = edge_type.numel(), self.rel_bias.size(0)
        if num_edges * B * H * C * h_src.element_size() <= scatter.EDGE_CHUNK_BYTES:
            # One chunk: the messages themselves ([E, B, heads, F_out] at most EDGE_CHUNK_BYTES).
            return scatter_sum(self.message(h_src.index_select(0, src), alpha, edge_type), dst, num_dst)
        if self.comp is None:
            out = edge_weighted_sum(alpha, h_src[:, 0], src, dst, num_dst)  # [N_dst, H, C]
        else:
            weight = self.comp.index_select(0, edge_type).unsqueeze(-1) * alpha.unsqueeze(1)  # [E, B, H]
            out = edge_weighted_sum(weight.view(-1, B * H), h_src.view(-1, B * H, C), src, dst, num_dst)
            out = out.view(-1, B, H, C).sum(1)  # [N_dst, H, C]
        if num_edges * C <= num_dst * num_rel:
            # Fewer edges than targets x classes: weight the biases per edge.
            bias = alpha.unsqueeze(-1) * self.rel_bias.index_select(0, edge_type)  # [E, H, C]
            return out + scatter_sum(bias, dst, num_dst)
        # Attention each target gives each relation class, summed over its edges.
        per_relation = scatter_sum(alpha, dst * num_rel + edge_type, num_dst * num_rel)  # [N_dst * R, H]
        per_relation = per_relation.view(num_dst, num_rel, H)  # [N_dst, R, H]
        return out + torch.einsum("nrh,rhc->nhc", per_relation, self.rel_bias)

    def _can_fuse(self) -> bool:
        """Whether :meth:`aggregate_fused` may stand in for :meth:`propagate` (nothing observes messages)."""
        hooks = (
            self._propagate_forward_pre_hooks,
            self._propagate_forward_hooks,
            self._message_forward_pre_hooks,
            self._message_forward_hooks,
            self._aggregate_forward_pre_hooks,
            self._aggregate_forward_hooks,
        )
        return (
            self.memory_efficient
            and not self.explain
            and self.decomposed_layers == 1
            and self.flow == "source_to_target"
            and type(self.aggr_module) is SumAggregation
            and not any(hooks)
        )

    def _geometry_logit(
        self, edge_attr: Tensor, att_geo: OptTensor = None, graph: OptTensor = None
    ) -> Tensor:
        r"""The geometry term of the logits, :math:`\mathbf{a}_{\mathrm{geo}}^{h\top}\mathrm{ReLU}(\mathbf{G}^{h}\mathbf{g}_{ij})`,
        with ``cond_geometry`` :math:`(\mathbf{a}_{\mathrm{geo}}^{h} + \mathbf{U}_{\mathrm{geo}}^{h}\mathbf{q}_g)`
        in place of :math:`\mathbf{a}_{\mathrm{geo}}^{h}` (``att_geo`` ``[G, heads, F_out]``, ``graph``
        the graph of each edge, ``None`` for one graph).

        ``[E, heads]``, in chunks of edges, each under activation
        checkpointing, so that the ``[E, heads, F_out]`` hidden layer is never
        kept for backward but recomputed chunk by chunk. Edges that fit in one
        chunk are computed at once and their hidden layer kept (at most
        :data:`~mmgraph.nn.scatter.EDGE_CHUNK_BYTES`): recomputing costs more
        time than that memory is worth.
        """
        att = self.att_edge if att_geo is None else att_geo
        graph = graph if att_geo is not None else None
        if not self.memory_efficient or torch.compiler.is_compiling():
            return self._geometry_term(edge_attr, att, graph)
        rows = max(1, scatter.EDGE_CHUNK_BYTES // (self.heads * self.out_channels * edge_attr.element_size()))
        if edge_attr.size(0) <= rows:
            # One chunk: keeping its [E, heads, F_out] hidden layer (at most EDGE_CHUNK_BYTES) costs less
            # than recomputing it; checkpointing only pays off where the edges span several chunks.
            return self._geometry_term(edge_attr, att, graph)
        chunks = zip(edge_attr.split(rows), graph.split(rows) if graph is not None else repeat(None))
        if not torch.is_grad_enabled():
            return torch.cat([self._geometry_term(attr, att, g) for attr, g in chunks])
        return torch.cat(
            [checkpoint(self._geometry_term, attr, att, g, use_reentrant=False) for attr, g in chunks]
        )

    def _geometry_term(self, edge_attr: Tensor, att: Tensor, graph: OptTensor) -> Tensor:
        geo = F.relu(self.lin_edge(edge_attr)).view(-1, self.heads, self.out_channels)  # [E, H, C]
        if graph is not None:
            att = att.index_select(0, graph)  # [E, H, C]
        return (geo * att).sum(-1)  # [E, H]

    def _edge_list(
        self, edge_index: Adj, edge_type: OptTensor, edge_attr: OptTensor, num_src: int, num_dst: int
    ) -> Tuple[Tensor, OptTensor, OptTensor]:
        """Turns a sparse ``adj_t`` into ``(source, target)`` edges; its integer values become ``edge_type``."""
        if not (is_torch_sparse_tensor(edge_index) or isinstance(edge_index, SparseTensor)):
            return edge_index, edge_type, edge_attr
        if tuple(edge_index.size()[:2]) != (num_dst, num_src):
            raise InputError(
                f"RelationGATConv: the sparse adjacency has size {tuple(edge_index.size()[:2])}, expected "
                f"adj_t of size (num_dst, num_src) = ({num_dst}, {num_src}); pass the transposed adjacency."
            )
        indices, values = to_edge_index(edge_index)  # rows are targets, columns sources
        if edge_type is None and values.dtype in _INT_DTYPES and values.dim() == 1:
            edge_type = values.long()
        return indices.flip(0), edge_type, edge_attr

    def _check_edges(self, edge_index: Tensor, edge_type: OptTensor, edge_attr: OptTensor) -> Tensor:
        num_edges = edge_index.size(1)
        if edge_type is None:
            return torch.zeros(num_edges, dtype=torch.long, device=edge_index.device)
        if edge_type.dim() != 1 or edge_type.numel() != num_edges:
            raise InputError(
                f"RelationGATConv: edge_type must have shape [{num_edges}] (one class per edge), "
                f"got {list(edge_type.shape)}."
            )
        if num_edges > 0:
            low, high = (int(v) for v in torch.aminmax(edge_type))
            if low < 0 or high >= self.num_relations:
                raise InputError(
                    f"RelationGATConv: edge_type values must lie in 0..{self.num_relations - 1}, got "
                    f"{low}..{high}; build the layer with num_relations > {high}."
                )
        if edge_attr is not None and self.lin_edge is not None and edge_attr.size(0) != num_edges:
            raise InputError(
                f"RelationGATConv: edge_attr has {edge_attr.size(0)} rows for {num_edges} edges; "
                "give one row per edge, in the order of edge_index."
            )
        return edge_type.long()

    def _with_self_loops(
        self, edge_index: Tensor, edge_type: Tensor, edge_attr: OptTensor, num_nodes: int
    ) -> Tuple[Tensor, Tensor, OptTensor]:
        keep = edge_index[0] != edge_index[1]
        loop = torch.arange(num_nodes, device=edge_index.device)
        edge_index = torch.cat([edge_index[:, keep], loop.repeat(2, 1)], dim=1)
        loop_type = torch.full((num_nodes,), self.num_relations, dtype=torch.long, device=edge_type.device)
        edge_type = torch.cat([edge_type[keep], loop_type])
        if edge_attr is not None:
            edge_attr = torch.cat([edge_attr[keep], edge_attr.new_zeros((num_nodes,) + edge_attr.shape[1:])])
        return edge_index, edge_type, edge_attr

    @staticmethod
    def _graph_of_sources(batch: Optional[TensorOrPair], num_src: int, num_graphs: int) -> OptTensor:
        """The graph id of every source node; ``None`` stands for "all in graph 0"."""
        batch_src = batch if isinstance(batch, Tensor) or batch is None else batch[0]
        if batch_src is None:
            if num_graphs != 1:
                raise InputError(
                    f"RelationGATConv: cond has {num_graphs} rows (graphs) but no batch vector was given; "
                    "pass batch= (the node-to-graph vector of the PyG batch)."
                )
            return None
        if batch_src.numel() != num_src:
            raise InputError(
                f"RelationGATConv: batch has {batch_src.numel()} entries for {num_src} source nodes; "
                "pass (batch_src, batch_dst) for bipartite edges."
            )
        return batch_src

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
            f"num_relations={self.num_relations}, heads={self.heads})"
        )
