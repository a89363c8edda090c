"""What every source adapter shares: row loading (hub or local files) and checked field access.

An adapter is a :class:`SourceSpec`: the real hub id, configs and splits, the Uni-Task it
feeds, and ``convert(row, ctx) -> Record`` for one upstream row. Rows come from
``datasets.load_dataset(hub_id, config, split=...)`` or, for a local copy as upstream ships
it, from ``load_dataset("parquet", data_files=...)`` or, for JSON lines, line by line
(:func:`json_lines_rows`: a line that is not a JSON object is a :class:`DataError` naming the
file and line, skipped and counted under ``on_bad_record: skip``); image columns are read
undecoded so a corrupt image becomes a :class:`DataError` naming its record, not a crash.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_r1.data.records import DataError, Record, image_bytes

NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)%?")
LETTER_RE = re.compile(r"^\(?([A-Z])[).:]?(?:\s|$)")


@dataclass(frozen=True)
class RowContext:
    """Where a row comes from: names the file and record in every error."""

    source: str
    file: str
    record_id: str
    index: int
    split: str
    base_dir: Path | None = None  # folder that relative image paths start from
    config: str | None = None

    def fail(self, field_name: str, reason: str, message: str) -> DataError:
        return DataError(self.file, self.record_id, field_name, reason, message)

    def get(self, row: dict[str, Any], name: str) -> Any:
        if name not in row:
            raise self.fail(name, "missing_field", "field is missing")
        return row[name]

    def text(self, row: dict[str, Any], name: str, *, empty_reason: str | None = "empty_field") -> str:
        """A string field; an empty one fails with ``empty_reason`` unless that is None."""
        value = self.get(row, name)
        if not isinstance(value, str):
            raise self.fail(name, "wrong_type", f"expected text, got {type(value).__name__}")
        if empty_reason is not None and not value.strip():
            raise self.fail(name, empty_reason, "text is empty")
        return value.strip()

    def optional_text(self, row: dict[str, Any], name: str) -> str:
        value = row.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(name, "wrong_type", f"expected text, got {type(value).__name__}")
        return value.strip()

    def text_list(self, row: dict[str, Any], name: str, *, required: bool = True) -> list[str]:
        value = self.get(row, name) if required else row.get(name)
        if value is None and not required:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "wrong_type", f"expected a list of text, got {type(value).__name__}")
        return [v.strip() for v in value]

    def image(self, value: Any, name: str) -> bytes:
        """An image value as PNG bytes; a relative path resolves against ``base_dir``."""
        if isinstance(value, str):
            path = Path(value) if self.base_dir is None else self.base_dir / value
            if not path.is_file():
                raise self.fail(name, "missing_image", f"image file {path} not found")
            value = path.read_bytes()
        elif isinstance(value, dict) and value.get("bytes") is None and value.get("path"):
            path = Path(value["path"])
            if not path.is_absolute() and self.base_dir is not None:
                value = {"bytes": None, "path": str(self.base_dir / path)}
        return image_bytes(value, file=self.file, record_id=self.record_id, field=name)


Converter = Callable[[dict[str, Any], RowContext], Record]
IdOf = Callable[[dict[str, Any], int, str], str]


def index_id(row: dict[str, Any], index: int, split: str) -> str:
    return f"{split}/{index:07d}"


@dataclass(frozen=True)
class SourceSpec:
    """One upstream dataset: where it lives, how its rows become records.

    Attributes:
        name: registry name (also the record id prefix and ``Record.source``).
        hub_id: the dataset's id on the Hugging Face hub.
        configs: hub configs to read (``(None,)`` for the default config).
        splits: role -> upstream split, roles ``train`` and ``eval``.
        uni_task: the Uni-Task its records feed (converters may refine it per row).
        convert: one upstream row -> :class:`Record`.
        record_id: the upstream id of a row (``index_id`` when upstream has none).
        local_format: ``parquet`` or ``json`` (jsonl) for a local copy.
        hub_loader: optional override of the hub branch (sources shipped as archives), called
            with the spec, the split and the pinned hub commit (None: latest).
    """

    name: str
    hub_id: str
    configs: tuple[str | None, ...]
    splits: dict[str, str]
    uni_task: str
    convert: Converter
    record_id: IdOf = index_id
    local_format: str = "parquet"
    hub_loader: Callable[[SourceSpec, str, str | None], Iterator[tuple[dict[str, Any], RowContext]]] | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def undecoded(dataset: Any) -> Any:
    """The dataset with every image column (also lists of images) read as raw bytes/path."""
    from datasets import Image

    features = copy.deepcopy(dataset.features)
    changed = False
    for feature in features.values():
        inner = getattr(feature, "feature", feature)
        if isinstance(inner, Image) and inner.decode:
            inner.decode = False
            changed = True
    return dataset.cast(features) if changed else dataset


def _split_of(path: Path, splits: tuple[str, ...]) -> str | None:
    return next((s for s in splits if re.match(rf"{re.escape(s)}([-_.]|$)", path.name)), None)


def local_files(path: Path, split: str, suffixes: tuple[str, ...],
                known_splits: tuple[str, ...] = ()) -> list[Path]:
    """The data files of one split in a local copy (a file, or a folder as upstream ships it).

    In a folder, files named after the split (``test-00000-of-00001.parquet``,
    ``maze.parquet``) are chosen; when no file is named after any known split, all are.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(str(path), "-", "path", "missing_file", "no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffixes))
    named = {p: _split_of(p, (split, *known_splits)) for p in files}
    chosen = [p for p in files if named[p] == split]
    if not chosen and any(named.values()):
        return []  # the copy holds other splits only
    if not chosen:
        chosen = files
    if not chosen:
        raise DataError(str(path), "-", "path", "missing_file", f"no {'/'.join(suffixes)} files")
    return chosen


def iter_dataset(dataset: Any, spec: SourceSpec, file: str, split: str, base_dir: Path | None,
                 config: str | None) -> Iterator[tuple[dict[str, Any], RowContext]]:
    for index, row in enumerate(undecoded(dataset)):
        record_id = f"{spec.name}/{spec.record_id(row, index, split)}"
        yield row, RowContext(spec.name, file, record_id, index, split, base_dir, config)


def load_rows(spec: SourceSpec, split: str, local_path: Path | str | None = None,
              cache_dir: str | None = None, configs: tuple[str, ...] | None = None,
              revision: str | None = None) -> Iterator[tuple[dict[str, Any], RowContext]]:
    """Rows of one split with their context: from ``local_path`` if given, else from the hub
    at commit ``revision`` (None: latest; ``configs`` overrides the spec's hub configs)."""
    import datasets

    if local_path is None:
        if spec.hub_loader is not None:
            yield from spec.hub_loader(spec, split, revision)
            return
        for config in configs or spec.configs:
            dataset = datasets.load_dataset(spec.hub_id, config, split=split, cache_dir=cache_dir, revision=revision)
            where = f"hf://datasets/{spec.hub_id}" + (f"/{config}" if config else "") + f"[{split}]"
            yield from iter_dataset(dataset, spec, where, split, None, config)
        return
    suffixes = (".parquet",) if spec.local_format == "parquet" else (".jsonl", ".json")
    known = tuple(s for value in spec.splits.values() for s in value.split(","))
    for path in local_files(Path(local_path), split, suffixes, known):
        if spec.local_format == "json":
            yield from json_lines_rows(spec, path, split)
            continue
        dataset = datasets.load_dataset(
            spec.local_format, data_files=str(path), split="train", cache_dir=cache_dir
        )
        yield from iter_dataset(dataset, spec, str(path), split, path.parent, None)


def json_lines_rows(spec: SourceSpec, path: Path, split: str) -> Iterator[tuple[Any, RowContext]]:
    """Rows of a JSON-lines file, read one line at a time; blank lines are ignored.

    A line that does not parse, or is not a JSON object, is yielded as a :class:`DataError`
    (file, ``line <n>``, reason ``bad_json``) in place of the row, for :func:`convert_rows`
    to raise or count. ``index`` counts non-blank lines, so ids match a clean file's.
    """
    index = 0
    with path.open(encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            except ValueError as err:
                where = f"line {number}"
                ctx = RowContext(spec.name, str(path), where, index, split, path.parent, None)
                yield DataError(str(path), where, "line", "bad_json", f"not a JSON object: {err}"), ctx
            else:
                record_id = f"{spec.name}/{spec.record_id(row, index, split)}"
                yield row, RowContext(spec.name, str(path), record_id, index, split, path.parent, None)
            index += 1


def convert_rows(spec: SourceSpec, rows: Iterator[tuple[dict[str, Any], RowContext]],
                 on_bad_record: str, skipped: Counter[str]) -> Iterator[Record]:
    """Convert rows; a bad one raises :class:`DataError` or (``skip``) is counted by reason.

    A row given as a :class:`DataError` (an unreadable line) is handled the same way.
    """
    for row, ctx in rows:
        try:
            if isinstance(row, DataError):
                raise row
            yield spec.convert(row, ctx)
        except DataError as err:
            if on_bad_record != "skip":
                raise
            skipped[f"{spec.name}:{err.reason}"] += 1


def answer_type_of(answer: str, choices: list[str]) -> str:
    """``choice`` for a letter among the choices, ``number`` for a number, else ``text``."""
    if choices and re.fullmatch(r"[A-Z]", answer) and ord(answer) - ord("A") < len(choices):
        return "choice"
    if NUMBER_RE.fullmatch(answer.replace(",", "")):
        return "number"
    return "text"


def split_sentences(text: str) -> list[str]:
    """A rationale as steps: its non-empty lines, or its sentences when it is one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return lines
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def option_letter(label: str) -> str | None:
    """The letter of a multiple-choice label such as ``A``, ``(B)``, ``C. text``."""
    match = LETTER_RE.match(label.strip())
    return match.group(1) if match else None


def strip_option(option: str) -> str:
    """``"A. text"`` or ``"(A) text"`` -> ``"text"``."""
    return re.sub(r"^\(?[A-Z][).:]\s*", "", option.strip())
