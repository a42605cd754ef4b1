"""Type-checked configuration: dataclasses filled from YAML and ``key=value`` overrides.

A configuration is a (possibly nested) ``@dataclass`` with commented
defaults, in the style of nanoGPT::

    @dataclass
    class OptimConfig:
        name: Literal["adamw", "sgd"] = "adamw"
        lr: float = 3e-4
        betas: Tuple[float, float] = (0.9, 0.999)

    @dataclass
    class RunConfig:
        optim: OptimConfig = field(default_factory=OptimConfig)
        epochs: int = 10
        out_dir: Optional[str] = None

    cfg = load_config(RunConfig, "run.yaml", ["optim.lr=1e-3", "optim.betas=0.9,0.98"])
    save_config(cfg, "runs/x/config.yaml")

Precedence: dataclass defaults, then the YAML file, then the overrides.
Values are parsed by the field's annotation: ``int``, ``float``, ``bool``
(``true``/``false``/``1``/``0``/``yes``/``no``), ``str``, :class:`~pathlib.Path`,
``Optional[...]`` (``none``/``null`` for :obj:`None`), ``Literal[...]``,
``Union[...]`` (first that fits), ``Tuple``/``List`` (YAML lists or
``"a,b"``), ``Dict[str, ...]`` (YAML mappings; ``d.key=v`` sets one entry) and
nested dataclasses. Unknown keys, wrong types and errors raised by a
dataclass's ``__post_init__`` become :class:`~mmgraph.errors.ConfigError`,
naming the key, where it came from and what would be valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Mapping
from collections.abc import Sequence as AbcSequence
from pathlib import Path
from typing import Any, Dict, Iterable, Literal, Optional, Type, TypeVar, Union

import yaml

from mmgraph.errors import ConfigError
from mmgraph.train.checkpoint import atomic_write

__all__ = ["config_from_dict", "config_to_dict", "load_config", "save_config"]

C = TypeVar("C")

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null", "~")
_MISSING = object()


class _Origins:
    """Remembers where each dotted key's value came from, for error messages."""

    def __init__(self, default: str):
        self.default = default
        self.by_key: Dict[str, str] = {}

    def record_tree(self, tree: Any, prefix: str, origin: str) -> None:
        self.by_key[prefix] = origin
        if isinstance(tree, Mapping):
            for k, v in tree.items():
                self.record_tree(v, f"{prefix}.{k}" if prefix else str(k), origin)

    def of(self, key: str) -> str:
        if key in self.by_key:
            return self.by_key[key]
        # A section named only through its children (an override "a.b=1" names "a").
        for k, origin in self.by_key.items():
            if k.startswith(key + "."):
                return origin
        # An item of a value ("a.b[1]" comes from wherever "a.b" came from).
        cut = max(key.rfind("."), key.rfind("["))
        return self.of(key[:cut]) if cut > 0 else self.default

    def under(self, prefix: str) -> str:
        """Every source that set a key in section ``prefix`` ("" for all)."""
        found = [o for k, o in self.by_key.items() if not prefix or k == prefix or k.startswith(prefix + ".")]
        return ", ".join(dict.fromkeys(found)) or self.default


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


@functools.cache
def _hints(cls: type) -> Dict[str, Any]:
    # get_type_hints resolves string annotations (modules using `from __future__ import annotations`).
    try:
        return typing.get_type_hints(cls)
    except Exception as e:
        raise ConfigError(f"cannot resolve the field annotations of {cls.__name__}: {e!r}") from None


def _init_fields(cls: type) -> Dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _unknown_key(key: str, name: str, valid: Iterable[str], section: str, origin: str) -> ConfigError:
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f"; did you mean {', '.join(repr(_join(section, c)) for c in close)}?" if close else ""
    where = f"under {section!r}" if section else "at the top level"
    return ConfigError(f"unknown config key {key!r} ({origin}){hint} Valid keys {where}: {', '.join(valid)}")


def _bad_value(key: str, value: Any, expected: str, origin: str, hint: str = "") -> ConfigError:
    return ConfigError(
        f"config key {key!r} ({origin}): expected {expected}, got {value!r} ({type(value).__name__}){hint}"
    )


def _dataclass_in(tp: Any) -> Optional[type]:
    """The dataclass that ``tp`` is, or that an ``Optional[...]`` of it wraps."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return _dataclass_in(inner[0])
    return None


def _is_dict_type(tp: Any) -> bool:
    return tp is dict or typing.get_origin(tp) in (dict, Mapping)


def _split_list(text: str) -> list:
    text = text.strip()
    if len(text) >= 2 and text[0] + text[-1] in ("[]", "()"):
        text = text[1:-1].strip()
    return [] if not text else [item.strip() for item in text.split(",")]


def _convert(value: Any, tp: Any, key: str, origins: _Origins) -> Any:
    """Parses or checks ``value`` against the annotation ``tp``; strings (from
    overrides, or YAML scalars such as ``1e-3`` that YAML 1.1 reads as text)
    are parsed, other values must already have the right type."""
    origin = origins.of(key)
    if tp is Any:
        return value
    kind = typing.get_origin(tp)
    args = typing.get_args(tp)

    if kind in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        allows_none = len(options) < len(args)
        if allows_none and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
            return None
        if len(options) == 1:
            return _convert(value, options[0], key, origins)
        for option in options:
            try:
                return _convert(value, option, key, origins)
            except ConfigError:
                continue
        raise _bad_value(key, value, " or ".join(_type_name(o) for o in args), origin)

    if kind is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        if isinstance(value, str):
            for choice in args:
                if not isinstance(choice, str) and _parses_to(value, choice):
                    return choice
        close = difflib.get_close_matches(str(value), [str(c) for c in args], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _bad_value(key, value, f"one of {', '.join(repr(c) for c in args)}", origin, hint)

    cls = _dataclass_in(tp)
    if cls is not None:
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return _from_mapping(cls, value, key, origins)
        raise _bad_value(
            key,
            value,
            f"a mapping for section {cls.__name__}",
            origin,
            f"; set its keys, e.g. {key}.<name>=...",
        )

    if kind in (list, tuple, AbcSequence) or tp in (list, tuple):
        return _convert_sequence(value, tp, kind or tp, args, key, origins)

    if _is_dict_type(tp):
        if not isinstance(value, Mapping):
            raise _bad_value(key, value, f"a mapping ({_type_name(tp)})", origin)
        key_tp, value_tp = args if args else (Any, Any)
        return {
            _convert(k, key_tp, _join(key, str(k)), origins): _convert(
                v, value_tp, _join(key, str(k)), origins
            )
            for k, v in value.items()
        }

    return _convert_scalar(value, tp, key, origin)


def _parses_to(text: str, choice: Any) -> bool:
    try:
        return _convert_scalar(text, type(choice), "", "") == choice
    except ConfigError:
        return False


def _convert_sequence(value: Any, tp: Any, kind: Any, args: tuple, key: str, origins: _Origins) -> Any:
    origin = origins.of(key)
    if isinstance(value, str):
        items = _split_list(value)
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise _bad_value(key, value, f"a list ({_type_name(tp)}), e.g. a YAML list or 'a,b'", origin)
    if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            raise _bad_value(key, value, f"{len(args)} items ({_type_name(tp)})", origin)
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(items)
    out = [_convert(v, t, f"{key}[{i}]", origins) for i, (v, t) in enumerate(zip(items, item_types))]
    return out if kind is list else tuple(out)


def _convert_scalar(value: Any, tp: Any, key: str, origin: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _bad_value(key, value, "bool (true/false/1/0)", origin)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _bad_value(key, value, "int", origin)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _bad_value(key, value, "float", origin)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad_value(key, value, "str", origin, "; quote it in YAML")
    if tp is Path or (isinstance(tp, type) and issubclass(tp, Path)):
        if isinstance(value, (str, Path)):
            return Path(value)
        raise _bad_value(key, value, "a path (str)", origin)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _bad_value(key, value, _type_name(tp), origin)


def _from_mapping(cls: Type[C], data: Mapping, prefix: str, origins: _Origins) -> C:
    fields = _init_fields(cls)
    hints = _hints(cls)
    for name in data:
        if not isinstance(name, str) or name not in fields:
            key = _join(prefix, str(name))
            raise _unknown_key(key, str(name), fields, prefix, origins.of(key))
    kwargs = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key, origins)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(
                f"config key {key!r} is required ({cls.__name__} has no default for it); set it"
            )
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except Exception as e:
        section = f"section {prefix!r}" if prefix else "the configuration"
        raise ConfigError(f"{section} ({cls.__name__}) is invalid ({origins.under(prefix)}): {e}") from e


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _MISSING


def _apply_override(cls: type, tree: dict, override: str, origins: _Origins) -> None:
    """Writes one ``a.b=value`` override into the raw tree, checking the key
    against the dataclasses on the way down."""
    if not isinstance(override, str):
        raise ConfigError(f"override {override!r} must be a string 'key=value'")
    key, sep, value = override.partition("=")
    key = key.strip()
    origin = f"override {override!r}"
    if not sep or not key:
        raise ConfigError(f"{origin} is not of the form key=value, e.g. optim.lr=1e-3")
    parts = key.split(".")
    node, tp = tree, cls
    for i, part in enumerate(parts):
        section = ".".join(parts[:i])
        here = ".".join(parts[: i + 1])
        fields = _init_fields(tp)
        if part not in fields:
            raise _unknown_key(key, part, fields, section, origin)
        field_tp = _hints(tp)[part]
        if i == len(parts) - 1:
            node[part] = value
            origins.by_key[here] = origin
            return
        sub_cls = _dataclass_in(field_tp)
        if sub_cls is not None:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node, tp = node[part], sub_cls
        elif _is_dict_type(field_tp):
            if not isinstance(node.get(part), dict):
                default = _default_of(fields[part])
                node[part] = dict(default) if isinstance(default, Mapping) else {}
            entry = ".".join(parts[i + 1 :])
            node[part][entry] = value
            origins.by_key[_join(here, entry)] = origin
            return
        else:
            raise ConfigError(
                f"{origin}: {here!r} is a value ({_type_name(field_tp)}), not a section, so {key!r} does not exist"
            )


def config_from_dict(cls: Type[C], data: Mapping, source: str = "<dict>") -> C:
    r"""Builds the dataclass ``cls`` from a (nested) mapping, with the same
    checks as :func:`load_config`.

    Args:
        cls (type): the config dataclass.
        data (Mapping): keys are field names; nested dataclasses take mappings.
        source (str, optional): where ``data`` came from, for error messages.
            (default: ``"<dict>"``)
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise ConfigError(f"{cls!r} is not a dataclass type")
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: a config must be a mapping of keys to values, got {type(data).__name__}"
        )
    origins = _Origins(source)
    origins.record_tree(data, "", source)
    return _from_mapping(cls, data, "", origins)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"config file {str(path)!r}{where}: not valid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r}: the top level must be a mapping of keys to values, got {type(data).__name__}"
        )
    return data


def load_config(cls: Type[C], path: Union[str, Path, None] = None, overrides: Iterable[str] = ()) -> C:
    r"""Reads a config dataclass from a YAML file and ``key=value`` overrides.

    Precedence: the dataclass defaults, then ``path``, then ``overrides`` in
    order. Dotted keys reach into nested dataclasses (``optim.lr=1e-3``).

    Args:
        cls (type): the config dataclass.
        path (str or Path, optional): a YAML file whose mapping mirrors the
            dataclass. (default: :obj:`None`)
        overrides (Iterable[str], optional): ``"key=value"`` strings, e.g. from
            ``--set key=value`` on the command line. (default: ``()``)

    Raises:
        ConfigError: on an unknown key (with close matches and the valid
            keys), a value of the wrong type, a missing required key, or an
            error from a dataclass's ``__post_init__``.
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise ConfigError(f"{cls!r} is not a dataclass type")
    if isinstance(overrides, str):
        overrides = [overrides]
    source = "defaults" if path is None else f"file {str(path)!r}"
    origins = _Origins(source)
    tree: dict = {}
    if path is not None:
        tree = _read_yaml(Path(path))
        origins.record_tree(tree, "", source)
    for override in overrides:
        _apply_override(cls, tree, override, origins)
    return _from_mapping(cls, tree, "", origins)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def config_to_dict(cfg: Any) -> Dict[str, Any]:
    """The config as nested plain dicts, lists, str, int, float, bool and
    :obj:`None` (tuples become lists, paths strings), ready for YAML, JSON or
    a checkpoint; :func:`config_from_dict` reads it back."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise ConfigError(f"config_to_dict expects a dataclass instance, got {type(cfg).__name__}")
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def save_config(cfg: Any, path: Union[str, Path]) -> None:
    """Writes the resolved config as YAML, atomically (temp file, then
    rename), so that every run keeps the exact settings it ran with.

    Args:
        cfg: a config dataclass instance, or a mapping.
        path (str or Path): the YAML file; parent folders are created.
    """
    data = dict(cfg) if isinstance(cfg, Mapping) else config_to_dict(cfg)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))
