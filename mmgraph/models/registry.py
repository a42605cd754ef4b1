"""Models by name, as timm makes them: ``@register_model`` entry points,
:func:`create_model` and :func:`list_models`.

An entry point is a function ``name(**overrides) -> nn.Module`` that fills a
model config with its defaults and the overrides (:func:`build_config`). The
overrides are flat keys: each names a field of the model config or of its
``encoder`` config (:class:`~mmgraph.models.MMGraphEncoderConfig`), whichever
has it; a key both have, or neither, is a :class:`~mmgraph.errors.ConfigError`
naming the key, its close matches and the valid keys.

The sizes a model needs from its data (vocabulary, answers, label and
attribute vocabularies, region features, pixels...) come from
:func:`model_kwargs_from_dataset`, so that::

    model = create_model("graph_vqa", **model_kwargs_from_dataset(dataset), hidden=64)

works for every listed model. Those data keys (:data:`DATA_KEYS`) describe
the data, not the model: a model without the field ignores them
(``question_only`` has no region input, a retrieval model no answers).
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from dataclasses import fields, is_dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

from torch import Tensor, nn

from mmgraph.errors import ConfigError
from mmgraph.typing import REGION, REGION_EDGE_TYPES, SEMANTIC_EDGE, TOKEN_EDGE_TYPES

__all__ = [
    "register_model",
    "create_model",
    "list_models",
    "is_model",
    "build_config",
    "model_kwargs_from_dataset",
    "concept_token_ids",
    "DATA_KEYS",
]

_MODELS: Dict[str, Callable[..., nn.Module]] = {}

#: The keys :func:`model_kwargs_from_dataset` may return.
DATA_KEYS: Tuple[str, ...] = (
    "vocab_size",
    "num_answers",
    "answers",
    "num_labels",
    "num_attrs",
    "label_token_ids",
    "attr_token_ids",
    "num_predicates",
    "region_feature_dim",
    "pixels",
    "grid",
    "edge_types",
)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Registers an entry point under its function name (a decorator)."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ConfigError(f"register_model: a model named {name!r} is already registered.")
    _MODELS[name] = fn
    return fn


def list_models(filter: Optional[str] = None) -> List[str]:
    """The registered model names, sorted; ``filter`` is a shell pattern (``"*vqa*"``)."""
    names = sorted(_MODELS)
    if filter:
        names = [name for name in names if fnmatch.fnmatch(name, filter)]
    return names


def is_model(name: str) -> bool:
    return name in _MODELS


def _close(key: str, candidates) -> str:
    matches = difflib.get_close_matches(key, list(candidates), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Makes the model registered as ``name`` with config ``overrides`` (flat keys, see the module doc).

    Raises:
        ConfigError: ``name`` is not registered, or an override key is unknown
            or ambiguous, or a value is invalid.
    """
    if name not in _MODELS:
        raise ConfigError(
            f"create_model: unknown model {name!r}.{_close(name, _MODELS)} Registered models: {list_models()}."
        )
    return _MODELS[name](**overrides)


def _field_names(config_cls) -> Set[str]:
    return {f.name for f in fields(config_cls)}


def build_config(
    config_cls,
    overrides: Mapping[str, Any],
    defaults: Optional[Mapping[str, Any]] = None,
    encoder_cls=None,
    encoder_defaults: Optional[Mapping[str, Any]] = None,
    model: str = "model",
):
    """A ``config_cls`` from an entry point's defaults and the user's flat
    overrides; with ``encoder_cls`` the config has an ``encoder`` field of
    that class and each key goes to whichever of the two has it.

    Args:
        config_cls: The model config dataclass.
        overrides (Mapping): The user's keys (they win over the defaults).
        defaults (Mapping, optional): The entry point's model-level defaults.
        encoder_cls (optional): The encoder config dataclass, for a nested config.
        encoder_defaults (Mapping, optional): The entry point's encoder-level defaults.
        model (str): The model's name, for messages.
    """
    if not is_dataclass(config_cls) or (encoder_cls is not None and not is_dataclass(encoder_cls)):
        raise ConfigError("build_config: config classes must be dataclasses.")
    outer = _field_names(config_cls) - ({"encoder"} if encoder_cls is not None else set())
    inner = _field_names(encoder_cls) if encoder_cls is not None else set()
    valid = sorted(outer | inner)
    outer_kwargs = dict(defaults or {})
    inner_kwargs = dict(encoder_defaults or {})
    for key, value in overrides.items():
        if key in outer and key in inner:
            raise ConfigError(
                f"{model}: the key {key!r} names a field of both {config_cls.__name__} and "
                f"{encoder_cls.__name__}; build the configs yourself to set one of them."
            )
        if key in outer:
            outer_kwargs[key] = value
        elif key in inner:
            inner_kwargs[key] = value
        elif key not in DATA_KEYS:
            raise ConfigError(
                f"{model}: unknown config key {key!r}.{_close(key, valid)} Valid keys: {valid}."
            )
    if encoder_cls is not None:
        outer_kwargs["encoder"] = encoder_cls(**inner_kwargs)
    return config_cls(**outer_kwargs)


# ----------------------------------------------------------------- data sizes
def _scene_vocabularies(dataset) -> Optional[Tuple[Any, Any, Any]]:
    """``(labels, attributes, predicates)`` vocabularies of a data set's scene graphs, if it has them:
    its ``label_vocab`` / ``attr_vocab`` / ``predicate_vocab`` attributes or its ``scene_vocabularies()``."""
    vocabs = tuple(getattr(dataset, name, None) for name in ("label_vocab", "attr_vocab", "predicate_vocab"))
    if all(v is not None for v in vocabs):
        return vocabs
    method = getattr(dataset, "scene_vocabularies", None)
    return tuple(method()) if callable(method) else None


def concept_token_ids(concepts, vocab) -> List[int]:
    """For every entry of a scene-graph vocabulary (``concepts.itos``), the id
    of the same word in the token vocabulary ``vocab``, or ``-1`` where it has
    none (specials, multi-word names, words no question uses): the map
    :class:`~mmgraph.nn.RegionEncoder` ties label and attribute embeddings to
    word embeddings with. Lower-case is tried when the exact form is missing."""
    specials = set(getattr(concepts, "specials", ()))
    out = []
    for word in concepts.itos:
        word = str(word)
        if word in specials:
            out.append(-1)
        elif word in vocab:
            out.append(int(vocab.stoi[word]))
        elif word.lower() in vocab:
            out.append(int(vocab.stoi[word.lower()]))
        else:
            out.append(-1)
    return out


def _max_id(value: Optional[Tensor]) -> Optional[int]:
    if value is None or value.numel() == 0:
        return None
    return int(value.max()) + 1


def model_kwargs_from_dataset(dataset) -> Dict[str, Any]:
    """The data-dependent config keys of a data set (see the module doc):

    ``vocab_size`` (``len(dataset.vocab)``); ``num_answers`` and ``answers``
    (from ``dataset.answers``, VQA data sets); ``num_labels``, ``num_attrs``,
    ``num_predicates`` (the scene-graph vocabularies, where the regions carry
    labels, attributes and semantic edges; the largest id in the data + 1 when
    the data set keeps no vocabulary); ``label_token_ids`` and
    ``attr_token_ids`` (where it keeps them: :func:`concept_token_ids`, the
    maps that tie region concepts to question words); ``region_feature_dim`` (where regions
    carry features ``x``); ``pixels`` and ``grid`` (where graphs carry
    ``image``); ``edge_types`` (the intra-modal edge types the graphs have).
    """
    if len(dataset) == 0:
        raise ConfigError(f"model_kwargs_from_dataset: {dataset!r} is empty.")
    vocab = getattr(dataset, "vocab", None)
    if vocab is None:
        raise ConfigError(
            f"model_kwargs_from_dataset: {type(dataset).__name__} has no token vocabulary (.vocab); "
            "use an mmgraph GraphDataset."
        )
    out: Dict[str, Any] = {"vocab_size": len(vocab)}
    answers = getattr(dataset, "answers", None)
    if answers is not None:
        out["num_answers"] = len(answers)
        out["answers"] = list(answers.itos)
    first = dataset[0]
    store = first[REGION]
    # The collated storage holds every graph of the split: ids are read from all of them at once.
    data = getattr(dataset, "_data", None)
    data = first if data is None else data
    region = data[REGION]
    scene_vocabs = _scene_vocabularies(dataset)
    sizes = tuple(len(v) for v in scene_vocabs) if scene_vocabs else None
    edge_types = [t for t in REGION_EDGE_TYPES + TOKEN_EDGE_TYPES if t in first.edge_types]
    if "label" in store:
        out["num_labels"] = sizes[0] if sizes else _max_id(region.get("label"))
        if scene_vocabs:
            out["label_token_ids"] = concept_token_ids(scene_vocabs[0], vocab)
    if "attr" in store:
        out["num_attrs"] = sizes[1] if sizes else _max_id(region.get("attr"))
        if scene_vocabs:
            out["attr_token_ids"] = concept_token_ids(scene_vocabs[1], vocab)
    if SEMANTIC_EDGE in edge_types:
        semantic = data[SEMANTIC_EDGE] if SEMANTIC_EDGE in data.edge_types else None
        out["num_predicates"] = (
            sizes[2] if sizes else _max_id(semantic.get("edge_type") if semantic else None)
        )
        if out["num_predicates"] is None:
            edge_types.remove(SEMANTIC_EDGE)
            del out["num_predicates"]
    if "x" in store:
        out["region_feature_dim"] = int(store.x.size(-1))
    if first.get("image") is not None:
        out["pixels"] = True
        grid = getattr(dataset, "grid", None)
        out["grid"] = int(grid) if grid is not None else math.isqrt(store.num_nodes)
    out["edge_types"] = tuple(edge_types)
    return out
