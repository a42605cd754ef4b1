"""A token vocabulary: built from a corpus with a minimum count, saved as JSON."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, List, Sequence, Union

from mmgraph.errors import DataFormatError, InputError

PAD = "<pad>"
UNK = "<unk>"
CLS = "<cls>"
SPECIALS = (PAD, UNK, CLS)


class Vocabulary:
    r"""A bijection between tokens and integer ids.

    The special tokens come first, so ``pad_id == 0`` and ``unk_id == 1`` for
    the defaults. Unknown tokens encode to ``unk_id``.

    Args:
        tokens (Iterable[str]): the regular tokens, in id order.
        specials (Sequence[str], optional): tokens placed before the regular
            ones; must contain ``"<pad>"`` and ``"<unk>"``. (default: ``("<pad>", "<unk>", "<cls>")``)
    """

    def __init__(self, tokens: Iterable[str] = (), specials: Sequence[str] = SPECIALS):
        if PAD not in specials or UNK not in specials:
            raise InputError(f"Vocabulary specials must contain {PAD!r} and {UNK!r}, got {list(specials)}")
        self.specials = tuple(specials)
        self.itos: List[str] = []
        self.stoi: dict = {}
        for tok in (*self.specials, *tokens):
            if tok not in self.stoi:
                self.stoi[tok] = len(self.itos)
                self.itos.append(tok)
        self.pad_id = self.stoi[PAD]
        self.unk_id = self.stoi[UNK]

    @classmethod
    def build(
        cls,
        corpus: Iterable[Sequence[str]],
        min_count: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = SPECIALS,
    ) -> Vocabulary:
        """Counts tokens over ``corpus`` (an iterable of token lists) and keeps
        those seen at least ``min_count`` times, most frequent first (ties in
        alphabetical order, so the result is deterministic)."""
        if min_count < 1:
            raise InputError(f"min_count must be >= 1, got {min_count}")
        counts: Counter = Counter()
        for tokens in corpus:
            if isinstance(tokens, str):
                raise InputError("Vocabulary.build expects an iterable of token lists, got a plain string")
            counts.update(tokens)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(specials))]
        return cls(kept, specials=specials)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, self.unk_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos and self.specials == other.specials

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)})"

    def encode(self, tokens: Sequence[str]) -> List[int]:
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int]) -> List[str]:
        return [self.itos[int(i)] for i in ids]

    def to_dict(self) -> dict:
        return {"specials": list(self.specials), "tokens": self.itos[len(self.specials) :]}

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> Vocabulary:
        try:
            return cls(d["tokens"], specials=d["specials"])
        except (KeyError, TypeError) as e:
            raise DataFormatError(
                f"{source}: not a vocabulary (expected keys 'specials' and 'tokens'): {e!r}"
            ) from None

    def save(self, path: Union[str, Path]) -> None:
        """Writes JSON atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Union[str, Path]) -> Vocabulary:
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
        return cls.from_dict(d, source=str(path))
