"""One step of interleaved intra-modal message passing and cross-modal attention."""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from mmgraph.errors import InputError
from mmgraph.nn.cross_attention import CrossModalAttention
from mmgraph.nn.pointer import PointerAttention
from mmgraph.nn.relation_gat import RelationGATConv
from mmgraph.nn.scatter import num_graphs as count_graphs
from mmgraph.typing import NODE_TYPES, REGION, REGION_TO_TOKEN, TOKEN, TOKEN_TO_REGION, EdgeType, OptTensor

__all__ = ["FusionBlock", "FeedForward", "edge_type_key"]


def edge_type_key(edge_type: EdgeType) -> str:
    """The :class:`~torch.nn.ModuleDict` key of an edge type, ``"src__rel__dst"`` (as in PyG's ``to_hetero``)."""
    return "__".join(edge_type)


class FeedForward(nn.Sequential):
    r"""The position-wise feed-forward network of a transformer block:
    :math:`\mathbf{W}_2\,\mathrm{Dropout}(\mathrm{GELU}(\mathbf{W}_1\mathbf{x}))`.

    Args:
        hidden (int): Input and output size.
        ffn_ratio (int, optional): Inner size is ``ffn_ratio * hidden``. (default: :obj:`4`)
        dropout (float, optional): Dropout after the activation. (default: :obj:`0.0`)
    """

    def __init__(self, hidden: int, ffn_ratio: int = 4, dropout: float = 0.0):
        super().__init__(
            nn.Linear(hidden, ffn_ratio * hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_ratio * hidden, hidden),
        )

    def reset_parameters(self) -> None:
        self[0].reset_parameters()
        self[3].reset_parameters()


class FusionBlock(nn.Module):
    r"""One block of the interleaved multi-modal graph encoder: relation-aware
    message passing inside each modality, cross-modal attention between
    them, then a feed-forward network, each a pre-norm residual sub-layer
    (`Xiong et al. 2020 <https://arxiv.org/abs/2002.04745>`_). For node type
    :math:`t` with states :math:`\mathbf{X}_t`:

    .. math::
        \mathbf{X}_t &\leftarrow \mathbf{X}_t + \mathrm{Dropout}\Big(
            \sum_{(s, r, t)} \mathrm{RelationGAT}_{(s,r,t)}\big(\mathrm{LN}(\mathbf{X}_s)\big)\Big)
            \quad \text{(intra: over the configured edge types into } t)

        \mathbf{X}_{\mathrm{region}} &\leftarrow \mathbf{X}_{\mathrm{region}} + \mathrm{Dropout}\big(
            \mathrm{CrossAttn}_{\mathrm{token} \to \mathrm{region}}(\mathrm{LN}(\mathbf{X}_{\mathrm{token}}),
            \mathrm{LN}(\mathbf{X}_{\mathrm{region}}))\big)
            \quad \text{(and the same from regions to tokens, both from the states before either update)}

        \mathbf{X}_t &\leftarrow \mathbf{X}_t + \mathrm{Dropout}\big(\mathrm{FFN}_t(\mathrm{LN}(\mathbf{X}_t))\big)

    The layout follows the interleaved two-stream designs of ViLBERT / LXMERT
    with graph message passing inside each stream, as ReGAT (relation-aware
    region graph) and LCGN (language-conditioned graph) do. Every node type
    in :data:`~mmgraph.typing.NODE_TYPES` has its own layer norms and FFN.

    **What the dicts hold** (all keys are constants of :mod:`mmgraph.typing`;
    a PyG ``Batch`` of ``HeteroData`` provides them as ``batch.x_dict``,
    ``batch.edge_index_dict``, ``batch.collect('edge_type')``,
    ``batch.collect('edge_attr')``, ``batch.batch_dict``):

    * ``x_dict[node_type]`` — ``[N_t, hidden]`` float node states for
      :data:`~mmgraph.typing.REGION` and :data:`~mmgraph.typing.TOKEN` (already
      embedded to ``hidden``; token ids must be embedded by the encoder).
      Other node types pass through unchanged. A missing type is skipped.
    * ``edge_index_dict[edge_type]`` — ``[2, E]`` (source, target) int64.
      Intra-modal types (``src == dst``, e.g. :data:`~mmgraph.typing.SPATIAL_EDGE`,
      :data:`~mmgraph.typing.SEMANTIC_EDGE`, :data:`~mmgraph.typing.DEP_EDGE`)
      are used when listed in ``num_relations``; others are ignored, so one
      data set serves ablations that drop an edge type.
      :data:`~mmgraph.typing.TOKEN_TO_REGION` / :data:`~mmgraph.typing.REGION_TO_TOKEN`
      carry the cross attention; the value ``None`` (key present) means
      complete edges within each graph without building them. A missing
      cross type switches that direction off for this call.
    * ``edge_type_dict[edge_type]`` — ``[E]`` int64 relation classes in
      ``0 .. num_relations[edge_type] - 1`` (spatial classes 1..12 need
      ``num_relations=NUM_SPATIAL_CLASSES``; dependency labels with reverse
      edges need ``2 * NUM_DEP_LABELS``). Missing: every edge is class 0.
    * ``edge_attr_dict[edge_type]`` — ``[E, edge_dim]`` float (relative box
      geometry, :data:`~mmgraph.typing.GEOMETRY_DIM`); used for the types the
      block has an ``edge_dim`` for, skipped when missing.
    * ``batch_dict[node_type]`` — ``[N_t]`` sorted graph ids. Needed when the
      batch holds more than one graph (cross attention stays within a graph,
      ``cond`` is gathered through it); ``None`` means a single graph.
    * ``cond`` — ``[B, cond_dim]`` per-graph condition (e.g. the pooled
      question) for question-adaptive attention of the relation layers.

    Args:
        hidden (int): Size of every node state.
        heads (int): Attention heads (must divide ``hidden``).
        num_relations (dict): ``{edge_type: number of relation classes}`` for
            each intra-modal edge type that gets a :class:`RelationGATConv`.
        edge_dim (dict or int, optional): ``{edge_type: edge_attr size}``, or
            one size for every type in ``num_relations``. (default: :obj:`None`)
        cond_dim (int, optional): Size of ``cond``; ``None`` for no
            conditioning. (default: :obj:`None`)
        dropout (float, optional): Dropout on attention weights, residual
            branches and inside the FFN. (default: :obj:`0.1`)
        ffn_ratio (int, optional): FFN inner size over ``hidden``. (default: :obj:`4`)
        intra (bool, optional): Run the intra-modal sub-layer. (default: :obj:`True`)
        cross (bool, optional): Run the cross-modal sub-layer. (default: :obj:`True`)
        num_bases (int, optional): Relation-specific message matrices through
            this many bases in every :class:`RelationGATConv`; ``None`` shares
            one matrix and tells relations apart by bias terms. (default: :obj:`None`)
        intra_gate (bool, optional): Scale each node type's intra-modal update
            by a learnable scalar that starts at zero (ReZero, `Bachlechner et
            al. 2020 <https://arxiv.org/abs/2003.04887>`_), so that the block
            starts as cross attention alone and lets graph messages in as they
            help. (default: :obj:`False`)
        cross_first (bool, optional): Run the cross-modal sub-layer before the
            intra-modal one (LXMERT's order). Regions then pass messages along
            their relations after they have read the question in the same
            block, so :math:`L` blocks give :math:`L` question-aware relation
            hops rather than :math:`L - 1`. (default: :obj:`False`)
        pointer (bool, optional): Add a :class:`PointerAttention` from tokens
            to regions to the cross-modal sub-layer: each token's softmax over
            the regions of its graph (which region does this word name?),
            whose values are added to the regions' update. Its weights can be
            returned (``return_pointer=True``) for a word-region alignment
            loss (:func:`mmgraph.heads.alignment_loss`). (default: :obj:`False`)
        pointer_readback (bool, optional): With ``pointer``, each token also
            reads the regions it picks, with the pointer's weights
            (:class:`PointerAttention` with ``readback=True``), added to the
            tokens' update: a word that names an object carries its state.
            (default: :obj:`False`)
        cond_gate (bool, optional): With ``intra_gate`` and ``cond_dim``, each
            graph's gate is the learnable scalar plus a linear function of its
            ``cond`` (starting at zero), so that the question decides how much
            of the graph messages its nodes take in (e.g. none for a question
            that compares two named objects' colours). (default: :obj:`False`)
        cond_geometry (bool, optional): Condition the geometry term of the
            attention of every relation layer with an ``edge_dim`` on ``cond``
            (see :class:`RelationGATConv`), so that the question decides
            whether near or far neighbours weigh more. (default: :obj:`False`)

    Shapes:
        - **input:** as above
        - **output:** a new dict ``{node_type: [N_t, hidden]}`` with the
          same keys as ``x_dict`` (the input dict is not modified).
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        num_relations: Mapping[EdgeType, int],
        edge_dim: Union[Mapping[EdgeType, int], int, None] = None,
        cond_dim: Optional[int] = None,
        dropout: float = 0.1,
        ffn_ratio: int = 4,
        intra: bool = True,
        cross: bool = True,
        num_bases: Optional[int] = None,
        intra_gate: bool = False,
        cross_first: bool = False,
        pointer: bool = False,
        cond_geometry: bool = False,
        cond_gate: bool = False,
        pointer_readback: bool = False,
    ):
        super().__init__()
        if hidden % heads != 0:
            raise InputError(f"FusionBlock: hidden={hidden} is not divisible by heads={heads}.")
        for edge_type in num_relations:
            if edge_type[0] != edge_type[-1]:
                raise InputError(
                    f"FusionBlock: num_relations lists {edge_type}, which joins two node types; list only "
                    "intra-modal edge types there (cross edges always use CrossModalAttention)."
                )
        if pointer_readback and not pointer:
            raise InputError(
                "FusionBlock: pointer_readback=True reads back the pointer's picks; set pointer=True."
            )
        if cond_gate and not (intra_gate and cond_dim is not None):
            raise InputError(
                f"FusionBlock: cond_gate=True makes the intra_gate depend on cond; it needs intra_gate=True and "
                f"cond_dim (got intra_gate={intra_gate}, cond_dim={cond_dim})."
            )
        self.hidden = hidden
        self.heads = heads
        self.num_relations = dict(num_relations)
        self.edge_dim = edge_dim
        self.cond_dim = cond_dim
        self.dropout = dropout
        self.ffn_ratio = ffn_ratio
        self.intra = intra
        self.cross = cross
        self.num_bases = num_bases
        self.cross_first = cross_first
        self.pointer = pointer and cross

        self.convs = nn.ModuleDict()
        self.norm_intra = nn.ModuleDict()
        if intra:
            for edge_type, count in self.num_relations.items():
                dim = edge_dim.get(edge_type) if isinstance(edge_dim, Mapping) else edge_dim
                self.convs[edge_type_key(edge_type)] = RelationGATConv(
                    hidden,
                    hidden // heads,
                    count,
                    heads=heads,
                    edge_dim=dim,
                    cond_dim=cond_dim,
                    dropout=dropout,
                    num_bases=num_bases,
                    cond_geometry=cond_geometry and dim is not None and cond_dim is not None,
                )
            for node_type in sorted({edge_type[-1] for edge_type in self.num_relations}):
                self.norm_intra[node_type] = nn.LayerNorm(hidden)
        self.intra_gate = (
            nn.ParameterDict({node_type: nn.Parameter(torch.zeros(1)) for node_type in self.norm_intra})
            if intra_gate
            else None
        )
        # The question's share of each node type's gate: one value per graph, starting at zero.
        self.gate_cond = (
            nn.ModuleDict({node_type: nn.Linear(cond_dim, 1, bias=False) for node_type in self.norm_intra})
            if cond_gate
            else None
        )
        if self.gate_cond is not None:
            for lin in self.gate_cond.values():
                nn.init.zeros_(lin.weight)
        self.attn = nn.ModuleDict()
        self.norm_cross = nn.ModuleDict()
        if cross:
            for edge_type in (TOKEN_TO_REGION, REGION_TO_TOKEN):
                self.attn[edge_type_key(edge_type)] = CrossModalAttention(hidden, heads, dropout=dropout)
            for node_type in NODE_TYPES:
                self.norm_cross[node_type] = nn.LayerNorm(hidden)
        self.point = (
            PointerAttention(hidden, heads, dropout=dropout, readback=pointer_readback)
            if self.pointer
            else None
        )
        self.norm_ffn = nn.ModuleDict({node_type: nn.LayerNorm(hidden) for node_type in NODE_TYPES})
        self.ffn = nn.ModuleDict(
            {node_type: FeedForward(hidden, ffn_ratio, dropout) for node_type in NODE_TYPES}
        )
        self.drop = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        for group in (self.convs, self.norm_intra, self.attn, self.norm_cross, self.norm_ffn, self.ffn):
            for module in group.values():
                module.reset_parameters()
        if self.point is not None:
            self.point.reset_parameters()
        if self.intra_gate is not None:
            for gate in self.intra_gate.values():
                nn.init.zeros_(gate)
        if self.gate_cond is not None:
            for lin in self.gate_cond.values():
                nn.init.zeros_(lin.weight)

    def forward(
        self,
        x_dict: Mapping[str, Tensor],
        edge_index_dict: Mapping[EdgeType, Optional[Tensor]],
        edge_type_dict: Optional[Mapping[EdgeType, Tensor]] = None,
        edge_attr_dict: Optional[Mapping[EdgeType, Tensor]] = None,
        batch_dict: Optional[Mapping[str, Tensor]] = None,
        cond: OptTensor = None,
        return_pointer: bool = False,
    ) -> Union[Dict[str, Tensor], Tuple[Dict[str, Tensor], Optional[Tuple[Tensor, Tensor]]]]:
        """Runs the block; see the class docstring for what each dict holds.

        With ``return_pointer=True`` it returns ``(x_dict, pointer)``: the
        pointer attention's ``(edge_index, alpha)`` (token -> region edges,
        ``[E, heads]`` weights summing to 1 over each token's regions), or
        ``None`` when the block has no pointer or the batch no cross-modal pair.
        """
        x_dict = dict(x_dict)
        pointer: Optional[Tuple[Tensor, Tensor]] = None
        edge_type_dict = edge_type_dict or {}
        edge_attr_dict = edge_attr_dict or {}
        batch_dict = batch_dict or {}
        cross = self.cross and REGION in x_dict and TOKEN in x_dict
        if cross and self.cross_first:
            pointer = self._cross(x_dict, edge_index_dict, batch_dict, cond, return_pointer)
        if self.intra:
            self._intra(x_dict, edge_index_dict, edge_type_dict, edge_attr_dict, batch_dict, cond)
        if cross and not self.cross_first:
            pointer = self._cross(x_dict, edge_index_dict, batch_dict, cond, return_pointer)
        for node_type in NODE_TYPES:
            if node_type in x_dict:
                x = x_dict[node_type]
                x_dict[node_type] = x + self.drop(self.ffn[node_type](self.norm_ffn[node_type](x)))
        if return_pointer:
            return x_dict, pointer
        return x_dict

    def _intra(self, x_dict, edge_index_dict, edge_type_dict, edge_attr_dict, batch_dict, cond) -> None:
        normed = {
            node_type: norm(x_dict[node_type])
            for node_type, norm in self.norm_intra.items()
            if node_type in x_dict
        }
        update: Dict[str, Tensor] = {}
        for edge_type in self.num_relations:
            node_type = edge_type[0]
            edge_index = edge_index_dict.get(edge_type)
            if edge_index is None or node_type not in normed:
                continue
            out = self.convs[edge_type_key(edge_type)](
                normed[node_type],
                edge_index,
                edge_type=edge_type_dict.get(edge_type),
                edge_attr=edge_attr_dict.get(edge_type),
                cond=cond,
                batch=batch_dict.get(node_type),
            )
            update[node_type] = out if node_type not in update else update[node_type] + out
        for node_type, out in update.items():
            if self.intra_gate is not None:
                gate = self.intra_gate[node_type]
                if self.gate_cond is not None and cond is not None:
                    per_graph = gate + self.gate_cond[node_type](cond)  # [G, 1]
                    batch = batch_dict.get(node_type)
                    gate = per_graph[0] if batch is None else per_graph.index_select(0, batch)  # [N, 1]
                out = gate * out
            x_dict[node_type] = x_dict[node_type] + self.drop(out)

    def _cross(
        self, x_dict, edge_index_dict, batch_dict, cond, return_pointer
    ) -> Optional[Tuple[Tensor, Tensor]]:
        """Updates ``x_dict`` in place; returns the pointer's ``(edge_index, alpha)`` when asked for and run."""
        normed = {node_type: self.norm_cross[node_type](x_dict[node_type]) for node_type in NODE_TYPES}
        num_graphs = cond.size(0) if cond is not None else count_graphs(*batch_dict.values())
        update: Dict[str, Tensor] = {}
        weights = None
        for edge_type in (TOKEN_TO_REGION, REGION_TO_TOKEN):
            if edge_type not in edge_index_dict:
                continue
            src, _, dst = edge_type
            update[dst] = self.attn[edge_type_key(edge_type)](
                normed[src],
                normed[dst],
                edge_index_dict[edge_type],
                batch_src=batch_dict.get(src),
                batch_dst=batch_dict.get(dst),
                num_graphs=num_graphs,
            )
        if self.point is not None and TOKEN_TO_REGION in edge_index_dict:
            out = self.point(
                normed[TOKEN],
                normed[REGION],
                edge_index_dict[TOKEN_TO_REGION],
                batch_src=batch_dict.get(TOKEN),
                batch_dst=batch_dict.get(REGION),
                return_attention_weights=return_pointer,
                num_graphs=num_graphs,
            )
            if return_pointer:
                out, weights = out
            if self.point.readback:
                out, back = out
                update[TOKEN] = update[TOKEN] + back if TOKEN in update else back
            update[REGION] = update[REGION] + out if REGION in update else out
        # Both directions read the states from before either update.
        for node_type, out in update.items():
            x_dict[node_type] = x_dict[node_type] + self.drop(out)
        return weights

    def __repr__(self) -> str:
        relations = ", ".join(f"{edge_type[1]}={count}" for edge_type, count in self.num_relations.items())
        return (
            f"{self.__class__.__name__}({self.hidden}, heads={self.heads}, relations=({relations}), "
            f"intra={self.intra}, cross={self.cross}{', cross_first=True' if self.cross_first else ''}"
            f"{', pointer=True' if self.pointer else ''}"
            f"{', pointer_readback=True' if self.point is not None and self.point.readback else ''})"
        )
