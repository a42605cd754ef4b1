"""Per-graph readouts of node states: attention pooling and a global (virtual) node."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from mmgraph.errors import InputError
from mmgraph.nn.cross_attention import CrossModalAttention
from mmgraph.nn.scatter import num_graphs as count_graphs
from mmgraph.nn.scatter import scatter_softmax, scatter_sum
from mmgraph.typing import OptTensor

__all__ = ["AttentionPooling", "GlobalNodePooling"]


def _resolve(x: Tensor, batch: OptTensor, cond: OptTensor, num_graphs: Optional[int]) -> Tuple[Tensor, int]:
    """The batch vector (all 0 when ``None``) and the number of graphs, trusting ``num_graphs``, then ``cond``."""
    if batch is None:
        batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    if num_graphs is None:
        num_graphs = cond.size(0) if cond is not None else count_graphs(batch)
    if cond is not None and cond.size(0) != num_graphs:
        raise InputError(
            f"pooling: cond has {cond.size(0)} rows for {num_graphs} graphs; give one row per graph."
        )
    return batch, num_graphs


class AttentionPooling(nn.Module):
    r"""Soft attention pooling of the nodes of each graph (the gated readout of
    `Li et al. 2016 <https://arxiv.org/abs/1511.05493>`_ with the additive
    score of `Bahdanau et al. 2015 <https://arxiv.org/abs/1409.0473>`_),
    optionally conditioned on a per-graph vector such as the other
    modality's pooled summary (the question-guided image attention of
    `SAN <https://arxiv.org/abs/1511.02274>`_; MCAN's attentional reduction
    is the unconditioned case):

    .. math::
        s_i = \mathbf{w}^\top \tanh\big(\mathbf{W}\mathbf{x}_i + \mathbf{U}\mathbf{c}_{g(i)} + \mathbf{b}\big),
        \qquad \alpha_i = \operatorname{softmax}_{i \in g} s_i,
        \qquad \mathbf{h}_g = \sum_{i \in g} \alpha_i\,\mathbf{x}_i

    A softmax weighs nodes against each other, so the pooled vector cannot
    say *how many* nodes matched (one red cube or three look the same). With
    ``count=True`` a second, sigmoid-gated score adds an unnormalised sum, a
    soft count of the matching nodes in the manner of the gated readout of
    Li et al. and of counting modules for VQA (`Zhang et al. 2018
    <https://arxiv.org/abs/1802.05766>`_):

    .. math::
        \gamma_i = \sigma\big(\mathbf{v}^\top \tanh(\mathbf{W}\mathbf{x}_i
        + \mathbf{U}\mathbf{c}_{g(i)} + \mathbf{b})\big), \qquad
        \mathbf{h}_g \mathrel{+}= \mathbf{W}_c \sum_{i \in g} \gamma_i\,\mathbf{x}_i

    A graph with no nodes pools to zeros.

    Args:
        hidden (int): Size of the node states (and of the output).
        cond_dim (int, optional): Size of the per-graph condition; ``None``
            for unconditioned pooling. (default: :obj:`None`)
        count (bool, optional): Add the gated-sum (counting) channel.
            (default: :obj:`False`)
        glimpses (int, optional): Independent softmax scores :math:`G`, each
            pooling its own weighted sum; the :math:`G` sums are concatenated
            and projected back to ``hidden`` (the glimpses of `BAN
            <https://arxiv.org/abs/1805.07932>`_ and MCAN), so that a
            question about two objects can read both. (default: :obj:`1`)

    Shapes:
        - **input:** ``x`` :math:`(N, F)`, ``batch`` :math:`(N)` *(optional)*,
          ``cond`` :math:`(B, F_{cond})` *(optional)*
        - **output:** :math:`(B, F)`; with ``return_attention_weights=True``
          also :math:`\alpha` of size :math:`(N)`, :math:`(N, G)` with ``glimpses > 1``.
    """

    def __init__(self, hidden: int, cond_dim: Optional[int] = None, count: bool = False, glimpses: int = 1):
        super().__init__()
        if glimpses < 1:
            raise InputError(f"AttentionPooling: glimpses must be >= 1, got {glimpses}.")
        self.hidden = hidden
        self.cond_dim = cond_dim
        self.count = count
        self.glimpses = glimpses
        self.proj = nn.Linear(hidden, hidden)
        self.cond_proj = nn.Linear(cond_dim, hidden, bias=False) if cond_dim is not None else None
        self.score = nn.Linear(hidden, glimpses, bias=False)
        self.glimpse_proj = nn.Linear(glimpses * hidden, hidden) if glimpses > 1 else None
        self.gate = nn.Linear(hidden, 1) if count else None
        self.count_proj = nn.Linear(hidden, hidden, bias=False) if count else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.proj.reset_parameters()
        if self.cond_proj is not None:
            self.cond_proj.reset_parameters()
        self.score.reset_parameters()
        if self.glimpse_proj is not None:
            self.glimpse_proj.reset_parameters()
        if self.count:
            self.gate.reset_parameters()
            self.count_proj.reset_parameters()

    def forward(
        self,
        x: Tensor,
        batch: OptTensor = None,
        cond: OptTensor = None,
        num_graphs: Optional[int] = None,
        return_attention_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        r"""Pools ``x`` per graph.

        Args:
            x (torch.Tensor): Node states ``[N, hidden]``.
            batch (torch.Tensor, optional): Graph id of every node ``[N]``; one
                graph when ``None``. (default: :obj:`None`)
            cond (torch.Tensor, optional): Per-graph condition ``[B, cond_dim]``
                (needs ``cond_dim``). (default: :obj:`None`)
            num_graphs (int, optional): ``B``; pass it (e.g. ``data.num_graphs``)
                so that trailing graphs without nodes are counted. Read from
                ``cond`` or ``batch`` otherwise. (default: :obj:`None`)
            return_attention_weights (bool, optional): Also return the node
                weights ``[N]`` (``[N, G]`` with glimpses; summing to 1 within
                each graph). (default: :obj:`False`)
        """
        batch, num_graphs = _resolve(x, batch, cond, num_graphs)
        hidden = self.proj(x)  # [N, F]
        if cond is not None:
            if self.cond_proj is None:
                raise InputError(
                    "AttentionPooling: cond was given but the layer has no cond_dim; set cond_dim."
                )
            hidden = hidden + self.cond_proj(cond).index_select(0, batch)
        hidden = torch.tanh(hidden)
        alpha = scatter_softmax(self.score(hidden), batch, num_graphs)  # [N, G]
        out = scatter_sum(alpha.unsqueeze(-1) * x.unsqueeze(1), batch, num_graphs)  # [B, G, F]
        out = out.flatten(1)  # [B, G * F]
        if self.glimpse_proj is not None:
            out = self.glimpse_proj(out)  # [B, F]
            # A graph without nodes pools to zeros, not to the projection's bias.
            has_nodes = torch.bincount(batch, minlength=num_graphs) > 0  # [B]
            out = out * has_nodes.unsqueeze(-1).to(out.dtype)
        else:
            alpha = alpha.squeeze(-1)  # [N]
        if self.count:
            gamma = torch.sigmoid(self.gate(hidden))  # [N, 1]
            out = out + self.count_proj(scatter_sum(gamma * x, batch, num_graphs))
        if return_attention_weights:
            return out, alpha
        return out

    def __repr__(self) -> str:
        extra = (", count=True" if self.count else "") + (
            f", glimpses={self.glimpses}" if self.glimpses > 1 else ""
        )
        return f"{self.__class__.__name__}({self.hidden}, cond_dim={self.cond_dim}{extra})"


class GlobalNodePooling(nn.Module):
    r"""Readout through a learned virtual node per graph that attends to all
    of its graph's nodes (the global node of `Gilmer et al. 2017
    <https://arxiv.org/abs/1704.01212>`_, read like a ``[CLS]`` token):

    .. math::
        \mathbf{q}_g = \mathbf{q}_0 + \mathbf{U}\mathbf{c}_g, \qquad
        \mathbf{h}_g = \mathrm{MHA}\big(\mathbf{q}_g, \{\mathbf{x}_i\}_{i \in g}\big)

    using :class:`~mmgraph.nn.CrossModalAttention` on complete per-graph
    edges (its dense path). A graph with no nodes pools to zeros.

    Args:
        hidden (int): Size of the node states (and of the output).
        heads (int, optional): Attention heads. (default: :obj:`1`)
        cond_dim (int, optional): Size of the per-graph condition added to
            the query; ``None`` for a fixed query. (default: :obj:`None`)
        dropout (float, optional): Dropout on attention weights. (default: :obj:`0.0`)

    Shapes:
        - **input:** ``x`` :math:`(N, F)`, ``batch`` :math:`(N)` *(optional, sorted)*,
          ``cond`` :math:`(B, F_{cond})` *(optional)*
        - **output:** :math:`(B, F)`
    """

    def __init__(self, hidden: int, heads: int = 1, cond_dim: Optional[int] = None, dropout: float = 0.0):
        super().__init__()
        self.hidden = hidden
        self.heads = heads
        self.cond_dim = cond_dim
        self.query = nn.Parameter(torch.empty(hidden))
        self.cond_proj = nn.Linear(cond_dim, hidden, bias=False) if cond_dim is not None else None
        self.attn = CrossModalAttention(hidden, heads, dropout=dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.query, std=0.02)
        if self.cond_proj is not None:
            self.cond_proj.reset_parameters()
        self.attn.reset_parameters()

    def forward(
        self, x: Tensor, batch: OptTensor = None, cond: OptTensor = None, num_graphs: Optional[int] = None
    ) -> Tensor:
        """Pools ``x`` per graph; arguments as in :meth:`AttentionPooling.forward`."""
        batch, num_graphs = _resolve(x, batch, cond, num_graphs)
        query = self.query.expand(num_graphs, -1)  # [B, F]
        if cond is not None:
            if self.cond_proj is None:
                raise InputError(
                    "GlobalNodePooling: cond was given but the layer has no cond_dim; set cond_dim."
                )
            query = query + self.cond_proj(cond)
        graph = torch.arange(num_graphs, device=x.device)
        out = self.attn(x, query, None, batch_src=batch, batch_dst=graph, num_graphs=num_graphs)  # [B, F]
        # An empty graph's attention output is only the projection bias: report zeros instead.
        has_nodes = torch.bincount(batch, minlength=num_graphs) > 0
        return out * has_nodes.unsqueeze(-1).to(out.dtype)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden}, heads={self.heads}, cond_dim={self.cond_dim})"
