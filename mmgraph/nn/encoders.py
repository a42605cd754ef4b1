"""Input encoders: raw region and token inputs -> ``hidden``-sized node states.

Every encoder here works on plain tensors (``x``, ``box``, ``label``,
``attr``, token ids, images) and knows nothing of the graph schema, so it can
sit in front of any stack of :mod:`mmgraph.nn` layers.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn.dense.linear import Linear

from mmgraph.errors import InputError
from mmgraph.typing import OptTensor

__all__ = ["RegionEncoder", "TokenEncoder", "GridBackbone", "PixelRegionEncoder", "feature_map_to_nodes"]


def _checking() -> bool:
    """Value checks read tensors on the host; skip them while ``torch.compile`` traces."""
    return not torch.compiler.is_compiling()


def _check_ids(name: str, ids: Tensor, size: int, fix: str) -> None:
    if _checking() and ids.numel() > 0:
        low, high = (int(v) for v in torch.aminmax(ids))
        if low < 0 or high >= size:
            raise InputError(f"{name}: ids must lie in 0..{size - 1}, got {low}..{high}; {fix}.")


def box_features(box: Tensor, box_dim: int = 5, frequencies: int = 0) -> Tensor:
    r"""The box vector of each region: normalised ``xyxy``, then the area
    :math:`(x_2 - x_1)(y_2 - y_1)` when ``box_dim == 5``; with
    ``frequencies`` :math:`L > 0`, these values are followed by their
    sinusoidal encodings, first every :math:`\sin(2^k\pi p)`, then every
    :math:`\cos(2^k\pi p)` (value by value, :math:`k = 0..L-1` within each
    value; NeRF's :math:`\gamma(p)`, `Mildenhall et al. 2020
    <https://arxiv.org/abs/2003.08934>`_). A linear layer on the raw values
    draws only smooth functions of the position; the high frequencies let it
    tell apart boxes a pixel apart ("is the red object on the left?" for an
    object next to the middle).

    Shapes:
        - **input:** :math:`(R, 4)`
        - **output:** :math:`(R, \mathrm{box\_dim} \cdot (1 + 2L))`
    """
    if box_dim == 5:
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])  # [R]
        box = torch.cat([box, area.unsqueeze(-1)], dim=-1)  # [R, 5]
    if frequencies <= 0:
        return box
    scale = torch.pi * 2.0 ** torch.arange(frequencies, dtype=box.dtype, device=box.device)  # [L]
    angle = (box.unsqueeze(-1) * scale).flatten(1)  # [R, box_dim * L]
    return torch.cat([box, angle.sin(), angle.cos()], dim=-1)  # [R, box_dim * (1 + 2L)]


class RegionEncoder(nn.Module):
    r"""Embeds region nodes from whatever the data carries: detector or CNN
    features, scene-graph object labels and attributes, and the box (as the
    object encoders of LXMERT / UNITER / ReGAT do, with the label and
    attribute embeddings of scene-graph models such as LCGN on GQA):

    .. math::
        \mathbf{h}_i = \mathrm{Dropout}\Big(\mathrm{LN}\big(\mathbf{W}_x\mathbf{x}_i
            + \mathbf{E}_{\mathrm{label}}[l_i]
            + \tfrac{1}{|A_i|}\textstyle\sum_{a \in A_i}\mathbf{E}_{\mathrm{attr}}[a]
            + \mathbf{W}_b\,[x_1, y_1, x_2, y_2, \mathrm{area}]_i\big)\Big)

    Each term is present when the layer was built for it *and* the input is
    given, so one layer serves detector features, scene graphs, or both;
    labels or attributes passed to a layer built without them are ignored
    (ablations that drop them keep the same data).
    :math:`A_i` are the region's valid attributes (``-1`` entries of
    ``attr`` are padding and ignored); a region without any contributes zero.

    **Concept tying.** Given ``concept_emb`` (the question's word embedding
    table, :attr:`TokenEncoder.word_emb`) and the maps ``label_token_ids`` /
    ``attr_token_ids`` (label or attribute id -> the id of the same word in
    the token vocabulary, ``-1`` where the vocabulary lacks it), a label or
    attribute whose word the questions use is embedded by that word's row,
    :math:`\mathbf{E}_{\mathrm{label}}[l] = \mathbf{E}_{\mathrm{word}}[\pi(l)]`,
    and the others by the layer's own table (the learned fallback). Region
    concepts and question words then start in one space and every update of
    "cube" moves both, as the shared GloVe concept/word embeddings of the
    Neural State Machine (`Hudson & Manning 2019
    <https://arxiv.org/abs/1907.03950>`_) and LCGN's GQA setting
    (`Hu et al. 2019 <https://arxiv.org/abs/1905.04405>`_) do; the model
    need not learn from the answers alone which region label matches which
    question word.

    Args:
        hidden (int): Output size.
        feature_dim (int, optional): Size of region features ``x``; ``-1`` for
            a lazy size; ``None`` for no feature input. (default: :obj:`-1`)
        num_labels (int, optional): Number of object label ids; ``None`` for
            no label input. (default: :obj:`None`)
        num_attrs (int, optional): Number of attribute ids; ``None`` for no
            attribute input. (default: :obj:`None`)
        box_dim (int, optional): ``5`` (normalised ``xyxy`` and area), ``4``
            (``xyxy``) or ``None`` (no box embedding). (default: :obj:`5`)
        box_frequencies (int, optional): Sinusoidal bands per box value
            (:func:`box_features`); ``0`` embeds the raw values only.
            (default: :obj:`0`)
        attr_reduce (str, optional): ``"mean"`` or ``"sum"`` of the valid
            attribute embeddings. (default: ``"mean"``)
        dropout (float, optional): Dropout on the output. (default: :obj:`0.0`)
        concept_emb (torch.nn.Embedding, optional): The shared word embedding
            table (of size ``hidden``) that mapped labels and attributes are
            embedded with; it stays owned by whoever else registers it.
            (default: :obj:`None`)
        label_token_ids (Sequence[int], optional): For every label id, its row
            of ``concept_emb`` or ``-1`` (own embedding); ``num_labels`` long.
            Needs ``concept_emb``. (default: :obj:`None`)
        attr_token_ids (Sequence[int], optional): As ``label_token_ids``, for
            the attribute ids; ``num_attrs`` long. (default: :obj:`None`)
        part_norm (bool, optional): Layer-normalise each input term before
            the sum, as LXMERT's object encoder does
            (:math:`\mathrm{LN}(\mathbf{W}_F\mathbf{f}) + \mathrm{LN}(\mathbf{W}_P\mathbf{p})`,
            `Tan & Bansal 2019 <https://arxiv.org/abs/1908.07490>`_): at
            initialisation the box projection is about 15x the scale of the
            ``std=0.02`` embeddings and would otherwise drown the label and
            attributes in the sum. (default: :obj:`False`)

    Shapes:
        - **input:** ``x`` :math:`(R, F)`, ``box`` :math:`(R, 4)` in
          :math:`[0, 1]`, ``label`` :math:`(R)`, ``attr`` :math:`(R, A)`,
          each optional
        - **output:** :math:`(R, \mathrm{hidden})`
    """

    def __init__(
        self,
        hidden: int,
        feature_dim: Optional[int] = -1,
        num_labels: Optional[int] = None,
        num_attrs: Optional[int] = None,
        box_dim: Optional[int] = 5,
        box_frequencies: int = 0,
        attr_reduce: str = "mean",
        dropout: float = 0.0,
        concept_emb: Optional[nn.Embedding] = None,
        label_token_ids: Optional[Sequence[int]] = None,
        attr_token_ids: Optional[Sequence[int]] = None,
        part_norm: bool = False,
    ):
        super().__init__()
        if box_dim not in (4, 5, None):
            raise InputError(f"RegionEncoder: box_dim must be 4, 5 or None, got {box_dim}.")
        if box_frequencies < 0:
            raise InputError(f"RegionEncoder: box_frequencies must be >= 0, got {box_frequencies}.")
        if attr_reduce not in ("mean", "sum"):
            raise InputError(f"RegionEncoder: attr_reduce must be 'mean' or 'sum', got {attr_reduce!r}.")
        if feature_dim is None and num_labels is None and num_attrs is None and box_dim is None:
            raise InputError(
                "RegionEncoder: no input is enabled; set feature_dim, num_labels, num_attrs or box_dim."
            )
        self.hidden = hidden
        self.feature_dim = feature_dim
        self.num_labels = num_labels
        self.num_attrs = num_attrs
        self.box_dim = box_dim
        self.box_frequencies = box_frequencies
        self.attr_reduce = attr_reduce
        self.lin_x = Linear(feature_dim, hidden) if feature_dim is not None else None
        self.label_emb = nn.Embedding(num_labels, hidden) if num_labels is not None else None
        self.attr_emb = nn.Embedding(num_attrs, hidden) if num_attrs is not None else None
        box_in = None if box_dim is None else box_dim * (1 + 2 * box_frequencies)
        self.lin_box = nn.Linear(box_in, hidden) if box_in is not None else None
        self.part_norm = None
        if part_norm:
            enabled = {"x": self.lin_x, "label": self.label_emb, "attr": self.attr_emb, "box": self.lin_box}
            self.part_norm = nn.ModuleDict(
                {name: nn.LayerNorm(hidden) for name, layer in enabled.items() if layer is not None}
            )
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        # Kept outside the module tree: the table's owner (the token encoder) registers, saves
        # and resets it; a second registration would list the same weight under two names.
        self._concept_emb = [concept_emb] if concept_emb is not None else []
        self.register_buffer(
            "label_token_ids", self._token_map("label", label_token_ids, num_labels), persistent=False
        )
        self.register_buffer(
            "attr_token_ids", self._token_map("attr", attr_token_ids, num_attrs), persistent=False
        )
        self.reset_parameters()

    def _token_map(self, name: str, ids: Optional[Sequence[int]], size: Optional[int]) -> OptTensor:
        if ids is None:
            return None
        if not self._concept_emb:
            raise InputError(
                f"RegionEncoder: {name}_token_ids were given without concept_emb; pass the word "
                "embedding table they index (TokenEncoder.word_emb)."
            )
        ids = torch.as_tensor(list(ids), dtype=torch.long)
        if size is None or ids.numel() != size:
            raise InputError(
                f"RegionEncoder: {name}_token_ids has {ids.numel()} entries but num_{name}s={size}; "
                f"give one token id (or -1) per {name} id."
            )
        table = self._concept_emb[0]
        if table.embedding_dim != self.hidden:
            raise InputError(
                f"RegionEncoder: concept_emb has size {table.embedding_dim}, the layer {self.hidden}; "
                "tie to a word embedding of the same hidden size."
            )
        bad = (ids < -1) | (ids >= table.num_embeddings)
        if bool(bad.any()):
            raise InputError(
                f"RegionEncoder: {name}_token_ids[{int(bad.nonzero()[0])}] = {int(ids[bad][0])} is not a row "
                f"of concept_emb (0..{table.num_embeddings - 1}) or -1."
            )
        return ids

    @property
    def tied(self) -> bool:
        """Whether labels or attributes are embedded with the shared word table."""
        return self.label_token_ids is not None or self.attr_token_ids is not None

    def _embed(self, ids: Tensor, own: nn.Embedding, token_ids: OptTensor) -> Tensor:
        """``own(ids)``, or the shared word row where ``token_ids`` maps the id to one."""
        if token_ids is None:
            return own(ids)
        mapped = token_ids[ids]  # [...] token ids, -1 where the word is not in the vocabulary
        shared = self._concept_emb[0](mapped.clamp(min=0))  # [..., hidden]
        return torch.where((mapped >= 0).unsqueeze(-1), shared, own(ids))

    def reset_parameters(self) -> None:
        if self.lin_x is not None:
            self.lin_x.reset_parameters()
        for emb in (self.label_emb, self.attr_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)
        if self.lin_box is not None:
            self.lin_box.reset_parameters()
        if self.part_norm is not None:
            for norm in self.part_norm.values():
                norm.reset_parameters()
        self.norm.reset_parameters()

    def forward(
        self, x: OptTensor = None, box: OptTensor = None, label: OptTensor = None, attr: OptTensor = None
    ) -> Tensor:
        """Embeds the regions; pass the inputs the data has (see the class docstring)."""
        parts = []
        if x is not None:
            if self.lin_x is None:
                raise InputError(
                    "RegionEncoder: region features x were given but the layer has no feature input; "
                    "build it with feature_dim=-1 (or the feature size)."
                )
            parts.append(("x", self.lin_x(x)))
        if label is not None and self.label_emb is not None:
            _check_ids(
                "RegionEncoder label", label, self.num_labels, "set num_labels to the label vocabulary size"
            )
            parts.append(("label", self._embed(label, self.label_emb, self.label_token_ids)))
        if attr is not None and self.attr_emb is not None:
            if attr.dim() == 1:
                attr = attr.unsqueeze(-1)  # one attribute per region: [R, 1]
            valid = attr >= 0  # [R, A]; -1 is padding
            _check_ids(
                "RegionEncoder attr",
                attr[valid],
                self.num_attrs,
                "set num_attrs to the attribute vocabulary size",
            )
            emb = self._embed(attr.clamp(min=0), self.attr_emb, self.attr_token_ids)  # [R, A, hidden]
            emb = emb * valid.unsqueeze(-1)
            emb = emb.sum(1)  # [R, hidden]
            if self.attr_reduce == "mean":
                emb = emb / valid.sum(1, keepdim=True).clamp(min=1)
            if self.part_norm is not None:
                # A region without attributes still contributes zero, not the norm's bias.
                emb = self.part_norm["attr"](emb) * valid.any(1, keepdim=True)
            parts.append(("attr", emb))
        if box is not None and self.lin_box is not None:
            parts.append(("box", self.lin_box(box_features(box, self.box_dim, self.box_frequencies))))
        if not parts:
            raise InputError(
                "RegionEncoder: none of the inputs the layer was built for was given "
                f"(feature_dim={self.feature_dim}, num_labels={self.num_labels}, num_attrs={self.num_attrs}, "
                f"box_dim={self.box_dim}); pass x, label, attr or box."
            )
        out = None
        for name, part in parts:
            if self.part_norm is not None and name != "attr":
                part = self.part_norm[name](part)
            out = part if out is None else out + part
        return self.drop(self.norm(out))

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.hidden}, feature_dim={self.feature_dim}, "
            f"num_labels={self.num_labels}, num_attrs={self.num_attrs}, box_dim={self.box_dim}"
            f"{f', box_frequencies={self.box_frequencies}' if self.box_frequencies else ''}"
            f"{', tied' if self.tied else ''})"
        )


class TokenEncoder(nn.Module):
    r"""Embeds token nodes: a word embedding of the vocabulary id (or a
    projection of precomputed token features, e.g.
    :class:`~mmgraph.nn.text_features.PretrainedTokenFeatures`) plus a learned
    position embedding, as BERT's input embedding does:

    .. math::
        \mathbf{h}_t = \mathrm{Dropout}\big(\mathrm{LN}(\mathbf{E}_{\mathrm{word}}[w_t]
            + \mathbf{E}_{\mathrm{pos}}[p_t])\big)
        \quad\text{or}\quad
        \mathrm{Dropout}\big(\mathrm{LN}(\mathbf{W}\mathbf{f}_t + \mathbf{E}_{\mathrm{pos}}[p_t])\big)

    Args:
        vocab_size (int, optional): Number of token ids; ``None`` when only
            features are given. (default: required)
        hidden (int): Output size.
        max_positions (int, optional): Number of position embeddings; ``0``
            for none. (default: :obj:`128`)
        padding_idx (int, optional): The padding id, whose embedding stays
            zero. (default: :obj:`0`)
        feature_dim (int, optional): Size of precomputed token features;
            ``-1`` for lazy; ``None`` for ids only. (default: :obj:`None`)
        dropout (float, optional): Dropout on the output. (default: :obj:`0.1`)

    Shapes:
        - **input:** ``x`` :math:`(T)` int64 ids or :math:`(T, F)` float
          features, ``pos`` :math:`(T)` *(optional)*
        - **output:** :math:`(T, \mathrm{hidden})`
    """

    def __init__(
        self,
        vocab_size: Optional[int],
        hidden: int,
        max_positions: int = 128,
        padding_idx: Optional[int] = 0,
        feature_dim: Optional[int] = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        if vocab_size is None and feature_dim is None:
            raise InputError(
                "TokenEncoder: give vocab_size (token ids) or feature_dim (token features), or both."
            )
        self.vocab_size = vocab_size
        self.hidden = hidden
        self.max_positions = max_positions
        self.padding_idx = padding_idx
        self.feature_dim = feature_dim
        self.word_emb = nn.Embedding(vocab_size, hidden, padding_idx=padding_idx) if vocab_size else None
        self.lin_feat = Linear(feature_dim, hidden) if feature_dim is not None else None
        self.pos_emb = nn.Embedding(max_positions, hidden) if max_positions > 0 else None
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.word_emb is not None:
            nn.init.normal_(self.word_emb.weight, std=0.02)
            if self.padding_idx is not None:
                with torch.no_grad():
                    self.word_emb.weight[self.padding_idx].zero_()
        if self.lin_feat is not None:
            self.lin_feat.reset_parameters()
        if self.pos_emb is not None:
            nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.norm.reset_parameters()

    def forward(self, x: Tensor, pos: OptTensor = None) -> Tensor:
        """Embeds ids ``[T]`` or projects features ``[T, F]``, adding ``pos`` ``[T]`` when given."""
        if x.is_floating_point():
            if self.lin_feat is None:
                raise InputError(
                    f"TokenEncoder: got float token features {list(x.shape)} but the layer has no feature "
                    "input; build it with feature_dim=-1 (or the feature size)."
                )
            out = self.lin_feat(x)
        else:
            if self.word_emb is None:
                raise InputError(
                    "TokenEncoder: got token ids but the layer has no vocabulary; set vocab_size."
                )
            _check_ids("TokenEncoder", x, self.vocab_size, "set vocab_size to len(vocab)")
            out = self.word_emb(x)
        if pos is not None and self.pos_emb is not None:
            _check_ids(
                "TokenEncoder pos", pos, self.max_positions, "raise max_positions above the longest text"
            )
            out = out + self.pos_emb(pos)
        return self.drop(self.norm(out))

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.vocab_size}, {self.hidden}, max_positions={self.max_positions}, "
            f"feature_dim={self.feature_dim})"
        )


def feature_map_to_nodes(fmap: Tensor) -> Tensor:
    r"""One node per cell of a ``[B, C, h, w]`` map, row-major within each
    image (cell ``(r, c)`` is node ``b * h * w + r * w + c``, the order of
    :func:`mmgraph.graph.boxes.grid_boxes`).

    Shapes:
        - **input:** :math:`(B, C, h, w)`
        - **output:** :math:`(B \cdot h \cdot w, C)`
    """
    return fmap.flatten(2).transpose(1, 2).reshape(-1, fmap.size(1))  # [B, C, h*w] -> [B*h*w, C]


def image_to_float(image: Tensor) -> Tensor:
    """``uint8`` images in 0..255 -> float in [0, 1]; float images are taken to be in [0, 1] already."""
    if image.is_floating_point():
        return image
    return image.float() / 255.0


class GridBackbone(nn.Module):
    r"""A small CNN whose output grid cells are the region nodes, trained end
    to end with the rest of the model, as in Relation Networks (`Santoro et
    al. 2017 <https://arxiv.org/abs/1706.01427>`_) and LCGN on CLEVR (`Hu et
    al. 2019 <https://arxiv.org/abs/1905.04405>`_): a stack of
    ``conv3x3(stride 2) - BatchNorm - ReLU`` blocks, then adaptive average
    pooling to ``grid x grid``.

    Images are ``uint8`` in 0..255 or float in [0, 1]; they are centred to
    [-1, 1] before the first convolution.

    Args:
        out_channels (int): Feature size of each cell (region node).
        grid (int, optional): Side of the output grid. (default: :obj:`8`)
        channels (Sequence[int], optional): Widths of the strided blocks
            before the last ``out_channels`` block. (default: ``(32, 64)``)
        in_channels (int, optional): Image channels. (default: :obj:`3`)

    Shapes:
        - **input:** :math:`(B, 3, H, W)`
        - **output:** :math:`(B \cdot \mathrm{grid}^2, \mathrm{out\_channels})`,
          row-major cells per image; :meth:`feature_map` gives
          :math:`(B, \mathrm{out\_channels}, \mathrm{grid}, \mathrm{grid})`.
    """

    def __init__(
        self, out_channels: int, grid: int = 8, channels: Sequence[int] = (32, 64), in_channels: int = 3
    ):
        super().__init__()
        if grid < 1:
            raise InputError(f"GridBackbone: grid must be >= 1, got {grid}.")
        self.out_channels = out_channels
        self.grid = grid
        self.channels = tuple(channels)
        self.in_channels = in_channels
        widths = [in_channels, *self.channels, out_channels]
        blocks = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            blocks += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.body = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(grid)

    def reset_parameters(self) -> None:
        for module in self.body:
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
                module.reset_parameters()

    def feature_map(self, image: Tensor) -> Tensor:
        """The ``[B, out_channels, grid, grid]`` map of ``image`` ``[B, 3, H, W]``."""
        if image.dim() != 4 or image.size(1) != self.in_channels:
            raise InputError(
                f"GridBackbone: images must be [B, {self.in_channels}, H, W], got {list(image.shape)}."
            )
        return self.pool(self.body(image_to_float(image) * 2.0 - 1.0))

    def forward(self, image: Tensor) -> Tensor:
        return feature_map_to_nodes(self.feature_map(image))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.out_channels}, grid={self.grid}, channels={self.channels})"


class PixelRegionEncoder(nn.Module):
    r"""Region nodes from pixels: a backbone turns each image into a feature
    map whose cells are the graph's regions (row-major, as
    :func:`~mmgraph.graph.boxes.grid_boxes` lays them out), then a
    :class:`RegionEncoder` adds the cell boxes and normalises.

    ``backbone`` is any :class:`torch.nn.Module` mapping ``[B, 3, H, W]`` to a
    ``[B, C, h, w]`` map (a torchvision ResNet trunk, :class:`GridBackbone`'s
    :meth:`~GridBackbone.feature_map`, ...) or directly to ``[B * R, C]``
    row-major node features (:class:`GridBackbone` itself). The number of
    cells must equal every graph's number of regions.

    Args:
        backbone (torch.nn.Module): The image model, trained with the rest.
        hidden (int): Output size.
        feature_dim (int, optional): Backbone output channels, ``-1`` for lazy.
            (default: :obj:`-1`)
        box_dim (int, optional): As in :class:`RegionEncoder`. (default: :obj:`5`)
        box_frequencies (int, optional): As in :class:`RegionEncoder`. (default: :obj:`0`)
        dropout (float, optional): Dropout on the output. (default: :obj:`0.0`)

    Shapes:
        - **input:** ``image`` :math:`(B, 3, H, W)`, ``box`` :math:`(R, 4)`
          *(optional)*, ``batch`` :math:`(R)` *(optional)*
        - **output:** :math:`(R, \mathrm{hidden})`, :math:`R = B \cdot h \cdot w`
    """

    def __init__(
        self,
        backbone: nn.Module,
        hidden: int,
        feature_dim: int = -1,
        box_dim: Optional[int] = 5,
        box_frequencies: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.backbone = backbone
        self.hidden = hidden
        self.region = RegionEncoder(
            hidden, feature_dim=feature_dim, box_dim=box_dim, box_frequencies=box_frequencies, dropout=dropout
        )

    def reset_parameters(self) -> None:
        if hasattr(self.backbone, "reset_parameters"):
            self.backbone.reset_parameters()
        self.region.reset_parameters()

    def forward(
        self, image: Tensor, box: OptTensor = None, batch: OptTensor = None, num_graphs: Optional[int] = None
    ) -> Tensor:
        """Region states ``[R, hidden]`` of ``image`` ``[B, 3, H, W]``; ``batch`` is the regions' graph ids."""
        out = self.backbone(image)
        num_images = image.size(0)
        if out.dim() == 4:
            cells = out.size(2) * out.size(3)
            shape = f"a {out.size(2)}x{out.size(3)} map"
            out = feature_map_to_nodes(out)  # [B*h*w, C]
        elif out.dim() == 2 and out.size(0) % max(num_images, 1) == 0:
            cells = out.size(0) // max(num_images, 1)
            shape = f"{cells} rows"
        else:
            raise InputError(
                f"PixelRegionEncoder: the backbone returned shape {list(out.shape)} for {num_images} images; "
                "it must return a [B, C, h, w] feature map or [B * cells, C] node features."
            )
        if _checking():
            self._check_counts(cells, shape, num_images, box, batch, num_graphs)
        return self.region(out, box)

    @staticmethod
    def _check_counts(cells, shape, num_images, box, batch, num_graphs) -> None:
        if num_graphs is not None and num_graphs != num_images:
            raise InputError(
                f"PixelRegionEncoder: {num_images} images for {num_graphs} graphs; give one image per graph."
            )
        if batch is not None:
            counts = torch.bincount(batch, minlength=num_images)
            wrong = (counts != cells).nonzero().flatten()
            if wrong.numel() > 0:
                g = int(wrong[0])
                raise InputError(
                    f"PixelRegionEncoder: the backbone gives {shape} ({cells} cells) per image but graph {g} "
                    f"has {int(counts[g])} regions; build the data set with a grid of the backbone's output "
                    "size (e.g. SyntheticVQA(grid=...)) or change the backbone's pooling."
                )
        num_regions = box.size(0) if box is not None else None
        if num_regions is not None and num_regions != cells * num_images:
            raise InputError(
                f"PixelRegionEncoder: the backbone gives {shape} ({cells} cells) per image, "
                f"{cells * num_images} for {num_images} images, but the graphs have {num_regions} regions; "
                "match the data set's grid to the backbone's output size."
            )

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.backbone.__class__.__name__}, {self.hidden})"
