"""Token features from a pretrained Hugging Face text encoder, pooled onto the parser's tokens."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from mmgraph.errors import InputError, MissingDependencyError
from mmgraph.nn.scatter import scatter_max, scatter_mean

__all__ = ["PretrainedTokenFeatures", "token_spans"]

POOLINGS = ("mean", "first", "max")
INSTALL_HINT = 'pip install "mmgraph[text]"'

Span = Tuple[int, int]


def token_spans(text: str, tokens: Sequence[str], index: Optional[int] = None) -> List[Span]:
    """The ``(start, end)`` character span of each token in ``text``, found
    left to right, case-insensitively (the parsers lower-case their tokens).

    Raises :class:`~mmgraph.errors.InputError` naming the token when one is
    not found after the previous one.
    """
    lowered = text.lower()
    spans, cursor = [], 0
    for token in tokens:
        start = lowered.find(token.lower(), cursor)
        if start < 0:
            where = "" if index is None else f"text {index} "
            raise InputError(
                f"PretrainedTokenFeatures: {where}token {token!r} is not in {text!r} after character {cursor}; "
                "pass the parser's character spans (ParsedText.spans) instead of the words."
            )
        cursor = start + len(token)
        spans.append((start, cursor))
    return spans


class PretrainedTokenFeatures(nn.Module):
    r"""Contextual features of the parser's tokens from a pretrained
    transformer encoder (BERT, MiniLM, RoBERTa, ... in the Hugging Face
    ``transformers`` format), loaded from a local folder only.

    The text is cut into the model's word pieces; every word piece is
    assigned to the parser token whose character span holds the piece's
    first character, and the pieces of each token are pooled
    (``"mean"``, ``"first"`` or ``"max"``) into one vector, as
    token-level probing and the word-level features of ViLBERT-style graph
    models do:

    .. math::
        \mathbf{f}_t = \operatorname{pool}_{p \,:\, \mathrm{start}(p) \in \mathrm{span}(t)}
            \mathrm{Encoder}(\mathrm{pieces})_p

    A token that no piece falls into (the text was cut at ``max_length``)
    gets zeros.

    Nothing is downloaded: ``model_dir`` must be a folder holding
    ``config.json``, the weights and a fast tokenizer
    (``tokenizer.json``); loading uses ``local_files_only=True``.

    Args:
        model_dir (str or Path): The local model folder.
        freeze (bool, optional): Keep the encoder's weights fixed (no
            gradients, always in eval mode); ``False`` fine-tunes it.
            (default: :obj:`True`)
        pooling (str, optional): ``"mean"``, ``"first"`` or ``"max"`` over a
            token's pieces. (default: ``"mean"``)
        max_length (int, optional): Word pieces per text, specials included;
            longer texts are cut. (default: :obj:`512`)

    Shapes:
        - **input:** ``texts`` :math:`B` strings, ``spans`` or ``tokens``
          :math:`B` lists of :math:`T_b` entries
        - **output:** :math:`(\sum_b T_b, F)` with :math:`F` =
          :attr:`out_channels`, tokens of text 0 first; with ``cls=True``
          each text's rows start with the encoder's ``[CLS]`` state
          (:math:`\sum_b (T_b + 1)` rows).
    """

    def __init__(
        self,
        model_dir: Union[str, Path],
        freeze: bool = True,
        pooling: str = "mean",
        max_length: int = 512,
    ):
        super().__init__()
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise MissingDependencyError(
                f"PretrainedTokenFeatures needs the transformers package; install it with {INSTALL_HINT}"
            ) from None
        if pooling not in POOLINGS:
            raise InputError(
                f"PretrainedTokenFeatures: pooling must be one of {list(POOLINGS)}, got {pooling!r}."
            )
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise InputError(
                f"PretrainedTokenFeatures: {str(model_dir)!r} is not a local model folder (no config.json); "
                "mmgraph never downloads weights: save the model with save_pretrained() and pass its folder."
            )
        self.model_dir = str(model_dir)
        self.freeze = freeze
        self.pooling = pooling
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        if not self.tokenizer.is_fast:
            raise InputError(
                f"PretrainedTokenFeatures: {self.model_dir!r} has no fast tokenizer (tokenizer.json), which "
                "the character offsets of word pieces need; save the model's fast tokenizer there."
            )
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        self.out_channels = int(self.model.config.hidden_size)
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> PretrainedTokenFeatures:
        super().train(mode)
        if self.freeze:
            # A frozen encoder keeps dropout off even while the rest trains.
            self.model.eval()
        return self

    def forward(
        self,
        texts: Sequence[str],
        spans: Optional[Sequence[Sequence[Span]]] = None,
        tokens: Optional[Sequence[Sequence[str]]] = None,
        cls: bool = False,
    ) -> Tensor:
        """Features of every token of every text.

        Args:
            texts (Sequence[str]): The raw texts (``data.text`` of a batch).
            spans (sequence of lists of (int, int), optional): Character
                spans of each text's tokens (``ParsedText.spans``).
            tokens (sequence of lists of str, optional): Each text's tokens
                (``data.tokens``); spans are found in the text when ``spans``
                is not given.
            cls (bool, optional): Put the encoder's ``[CLS]`` state before each
                text's tokens (for graphs built with ``add_cls=True``).
                (default: :obj:`False`)
        """
        if isinstance(texts, str):
            raise InputError("PretrainedTokenFeatures: texts must be a list of strings, got one string.")
        if spans is None:
            if tokens is None:
                raise InputError(
                    "PretrainedTokenFeatures: pass spans= or tokens= to say where the tokens are."
                )
            spans = [token_spans(text, toks, i) for i, (text, toks) in enumerate(zip(texts, tokens))]
        if len(spans) != len(texts):
            raise InputError(f"PretrainedTokenFeatures: {len(texts)} texts but {len(spans)} span lists.")
        device = next(self.model.parameters()).device
        enc = self.tokenizer(
            list(texts),
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping")  # [B, P, 2]
        special = enc.pop("special_tokens_mask").bool()  # [B, P]
        enc = {key: value.to(device) for key, value in enc.items()}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            states = self.model(**enc).last_hidden_state  # [B, P, F]
        return self._pool(
            states, offsets.to(device), special.to(device), enc["attention_mask"].bool(), spans, cls
        )

    def _pool(
        self,
        states: Tensor,
        offsets: Tensor,
        special: Tensor,
        mask: Tensor,
        spans: Sequence[Sequence[Span]],
        cls: bool,
    ) -> Tensor:
        device = states.device
        num_texts, num_pieces = states.shape[:2]
        counts = torch.tensor([len(s) for s in spans], dtype=torch.long, device=device)  # [B]
        flat = [span for text_spans in spans for span in text_spans]
        span = torch.tensor(flat, dtype=torch.long, device=device).view(-1, 2)  # [T, 2]
        # Characters of text b live at b * stride + offset: one sorted axis for all texts.
        stride = (
            int(max(int(offsets.max()) if offsets.numel() else 0, int(span.max()) if span.numel() else 0)) + 1
        )
        text_of_token = torch.repeat_interleave(torch.arange(num_texts, device=device), counts)  # [T]
        starts = text_of_token * stride + span[:, 0]  # [T], sorted
        ends = text_of_token * stride + span[:, 1]  # [T]
        text_of_piece = torch.arange(num_texts, device=device).view(-1, 1).expand(-1, num_pieces)  # [B, P]
        piece_start = (text_of_piece * stride + offsets[..., 0]).reshape(-1)  # [B * P]
        token = (
            torch.searchsorted(starts, piece_start, right=True) - 1
        )  # [B * P], last token starting at or before
        real = (mask & ~special).reshape(-1) & (offsets[..., 1] > offsets[..., 0]).reshape(-1)
        inside = real & (token >= 0)
        token_clamped = token.clamp(min=0)
        inside &= piece_start < ends.index_select(0, token_clamped)
        inside &= text_of_token.index_select(0, token_clamped) == text_of_piece.reshape(-1)
        pieces = states.reshape(num_texts * num_pieces, -1)[inside]  # [P_in, F]
        owner = token[inside]  # [P_in]
        num_tokens = span.size(0)
        if self.pooling == "mean":
            out = scatter_mean(pieces, owner, num_tokens)
        elif self.pooling == "max":
            out = scatter_max(pieces, owner, num_tokens)
        else:
            piece_id = inside.nonzero().flatten()  # [P_in], increasing
            first = torch.full((num_tokens,), -1, dtype=torch.long, device=device)
            first = first.scatter_reduce(0, owner, piece_id, reduce="amin", include_self=False)
            out = states.reshape(num_texts * num_pieces, -1).index_select(0, first.clamp(min=0))
            out = out * (first >= 0).unsqueeze(-1).to(out.dtype)  # tokens without a piece: zeros
        if not cls:
            return out
        # Row of token t of text b is t + b + 1: every text gains one leading [CLS] row.
        rows = torch.arange(num_tokens, device=device) + text_of_token + 1
        cls_rows = torch.cumsum(counts + 1, 0) - (counts + 1)  # [B]
        full = out.new_zeros(num_tokens + num_texts, out.size(1))
        full = full.index_copy(0, rows, out).index_copy(0, cls_rows, states[:, 0])
        return full

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({Path(self.model_dir).name!r}, out_channels={self.out_channels}, "
            f"freeze={self.freeze}, pooling={self.pooling!r})"
        )
