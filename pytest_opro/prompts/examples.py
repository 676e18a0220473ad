"""Example sets: loading JSONL, YAML and CSV files (splits are in :mod:`pytest_opro.prompts.splits`).

An example file holds one record per example::

    {"id": "q1", "input": "How many legs has a cat?", "target": "4", "aliases": ["four"]}

- ``input`` is the text the template shows as ``{{ input }}``. A record without ``input`` uses named
  fields instead: every key other than ``id``, ``target``, ``choices``, ``aliases`` and ``metadata``
  becomes a template variable (``{{ question }}``, ``{{ context }}``, ...).
- ``target`` is the expected answer. Numbers and booleans are turned into strings; a list is read
  as the target followed by more accepted answers (BIG-bench style).
- ``choices`` (multiple choice options) and ``aliases`` (other accepted answers) are optional lists;
  in CSV they are ``|``-separated cells. ``metadata`` is an optional mapping (a JSON object in CSV).
- ``id`` is optional: without one, the id is a hash of the input, so it survives edits to the target
  and reordering of the file. Every id must be unique.

Keys other than the above next to an ``input`` are kept in ``metadata``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from pytest_opro.errors import ExampleError
from pytest_opro.hashing import canonical_json, sha256_hex

__all__ = [
    "Example",
    "examples_fingerprint",
    "examples_from_records",
    "load_examples",
]

JSONL_SUFFIXES = (".jsonl", ".json-lines", ".jsonlines", ".ndjson")
YAML_SUFFIXES = (".yaml", ".yml")
CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".json",)

_RESERVED = ("choices", "aliases", "metadata")


@dataclass(frozen=True)
class Example:
    """One input with its expected output.

    ``input`` is a string, or a mapping of named fields for templates that use several variables.
    ``source`` is ``"path:line"`` (or ``"<memory>:item N"``) and only serves error messages.
    """

    id: str
    input: str | Mapping[str, Any]
    target: str
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def __hash__(self) -> int:
        return hash((self.id, self.target, self.choices, self.aliases))

    def variables(self) -> dict[str, Any]:
        """Template variables: ``input``, ``choices``, ``metadata`` and, for mapping inputs, each field."""
        out: dict[str, Any] = {"input": self.input, "choices": list(self.choices)}
        if isinstance(self.input, Mapping):
            out.update(self.input)
        out["metadata"] = dict(self.metadata)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fields that define the example (for hashing and fingerprints; no metadata, no source)."""
        return {
            "id": self.id,
            "input": dict(self.input) if isinstance(self.input, Mapping) else self.input,
            "target": self.target,
            "choices": list(self.choices),
            "aliases": list(self.aliases),
        }


# --------------------------------------------------------------------------------------------- loading


def load_examples(
    path: str | os.PathLike[str],
    *,
    input_field: str = "input",
    target_field: str = "target",
    id_field: str = "id",
) -> list[Example]:
    """Load examples from a ``.jsonl``, ``.yaml``/``.yml``, ``.csv`` (or ``.json`` array) file.

    Relative paths are resolved against the current directory. Every problem with the file raises
    :class:`~pytest_opro.errors.ExampleError` with one line naming ``file:line`` and the fix.
    """
    p = Path(os.fspath(path))
    name = os.fspath(path)
    suffix = p.suffix.lower()
    known = JSONL_SUFFIXES + YAML_SUFFIXES + CSV_SUFFIXES + JSON_SUFFIXES
    if suffix not in known:
        raise ExampleError(
            f"{name}: unknown example file extension {suffix or '(none)'!r}; "
            "use .jsonl (one JSON object a line), .yaml/.yml or .csv"
        )
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ExampleError(
            f"{name}: example file not found (looked in {p.resolve()}); "
            "relative paths are resolved against the current directory"
        ) from None
    except IsADirectoryError:
        raise ExampleError(f"{name}: is a directory; give the path of an example file") from None
    except OSError as exc:
        raise ExampleError(f"{name}: cannot read example file ({exc.strerror or exc})") from None
    text = _decode(data, name)

    if suffix in JSONL_SUFFIXES:
        records = _parse_jsonl(text, name)
    elif suffix in YAML_SUFFIXES:
        records = _parse_yaml(text, name)
    elif suffix in CSV_SUFFIXES:
        records = _parse_csv(text, name)
    else:
        records = _parse_json(text, name)
    if not records:
        raise ExampleError(f"{name}: the file holds no examples; add at least one record with an input and a target")
    return _build(
        records,
        name,
        input_field=input_field,
        target_field=target_field,
        id_field=id_field,
        csv_cells=suffix in CSV_SUFFIXES,
    )


def examples_from_records(
    records: Iterable[Mapping[str, Any] | Example],
    *,
    source: str = "<memory>",
    input_field: str = "input",
    target_field: str = "target",
    id_field: str = "id",
) -> list[Example]:
    """Build examples from in-memory mappings (same rules as files); :class:`Example` items pass through."""
    located = [(f"{source}:item {i}", rec) for i, rec in enumerate(records, start=1)]
    if not located:
        raise ExampleError(f"{source}: no examples given; pass at least one record with an input and a target")
    return _build(located, source, input_field=input_field, target_field=target_field, id_field=id_field)


def _decode(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        line = data.count(b"\n", 0, start) + 1
        line_start = data.rfind(b"\n", 0, start) + 1
        raise ExampleError(
            f"{name}:{line}: byte 0x{data[start]:02x} at byte offset {start} (column {start - line_start + 1}) "
            "is not UTF-8; re-save the file as UTF-8"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def _parse_jsonl(text: str, name: str) -> list[tuple[str, Any]]:
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExampleError(
                f"{name}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno}); "
                "each line must hold one complete JSON object"
            ) from None
        records.append((f"{name}:{lineno}", obj))
    return records


def _parse_json(text: str, name: str) -> list[tuple[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several objects, one a line: read it as JSON lines
            return _parse_jsonl(text, name)
        raise ExampleError(
            f"{name}:{exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno}); fix the syntax"
        ) from None
    items = _top_level_list(data, name)
    return [(f"{name}:item {i}", rec) for i, rec in enumerate(items, start=1)]


def _top_level_list(data: Any, name: str) -> list[Any]:
    if data is None:
        return []
    if isinstance(data, Mapping) and "examples" in data:
        data = data["examples"]
        if data is None:
            return []
    if not isinstance(data, list):
        raise ExampleError(
            f"{name}:1: expected a list of examples or a mapping with an 'examples' list, "
            f"found {type(data).__name__}; put the examples in a top-level list"
        )
    return data


def _parse_yaml(text: str, name: str) -> list[tuple[str, Any]]:
    try:
        data = yaml.safe_load(text)
        # A second, construction-free pass gives each list item's line for messages.
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ExampleError(f"{name}{line}: YAML syntax error ({problem}); fix the file") from None
    items = _top_level_list(data, name)
    item_nodes: list[Any] = []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "examples" and isinstance(value, yaml.SequenceNode):
                item_nodes = value.value
    elif isinstance(node, yaml.SequenceNode):
        item_nodes = node.value
    records = []
    for i, rec in enumerate(items):
        where = f"{name}:{item_nodes[i].start_mark.line + 1}" if i < len(item_nodes) else f"{name}:item {i + 1}"
        records.append((where, rec))
    return records


def _parse_csv(text: str, name: str) -> list[tuple[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return []
        header = [h.strip() for h in header]
        records = []
        last_line = reader.line_num
        for row in reader:
            lineno = last_line + 1
            last_line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                raise ExampleError(
                    f"{name}:{lineno}: row has {len(row)} cells but the header has {len(header)}; "
                    "quote cells that contain commas"
                )
            rec = {h: (row[i] if i < len(row) else None) for i, h in enumerate(header) if h}
            records.append((f"{name}:{lineno}", rec))
    except csv.Error as exc:
        raise ExampleError(f"{name}:{reader.line_num}: malformed CSV ({exc}); fix the quoting") from None
    return records


def _build(
    records: Sequence[tuple[str, Any]],
    name: str,
    *,
    input_field: str,
    target_field: str,
    id_field: str,
    csv_cells: bool = False,
) -> list[Example]:
    examples: list[Example] = []
    seen: dict[str, tuple[str, bool]] = {}
    for where, rec in records:
        if isinstance(rec, Example):
            ex = rec
            generated = False
        else:
            ex, generated = _record_to_example(
                rec, where, input_field=input_field, target_field=target_field, id_field=id_field, csv_cells=csv_cells
            )
        if ex.id in seen:
            first, first_generated = seen[ex.id]
            if generated and first_generated:
                raise ExampleError(
                    f"{where}: same input as {first} (ids without an '{id_field}' field are a hash of the input); "
                    f"remove the duplicate or give both an '{id_field}'"
                )
            raise ExampleError(
                f"{where}: duplicate id {ex.id!r} (first at {first}); give each example a unique '{id_field}'"
            )
        seen[ex.id] = (where, generated)
        examples.append(ex)
    if not examples:
        raise ExampleError(f"{name}: no examples; add at least one record with an input and a target")
    return examples


def _record_to_example(
    rec: Any, where: str, *, input_field: str, target_field: str, id_field: str, csv_cells: bool
) -> tuple[Example, bool]:
    """One record as an Example, and whether its id was generated (a hash of its input).

    `csv_cells` says the record is a CSV row: every cell is a string (metadata as JSON text)."""
    if not isinstance(rec, Mapping):
        raise ExampleError(
            f"{where}: expected a mapping with '{input_field}' and '{target_field}', found {type(rec).__name__}; "
            "write each example as an object"
        )
    target, extra_aliases = _target(rec, where, target_field, csv_cells)
    choices = _string_list(rec.get("choices"), where, "choices")
    aliases = _string_list(rec.get("aliases"), where, "aliases")
    for alias in extra_aliases:
        if alias not in aliases:
            aliases.append(alias)
    metadata = _metadata(rec.get("metadata"), where, csv_cells)
    others = {k: v for k, v in rec.items() if k not in {id_field, target_field, input_field, *_RESERVED}}
    inp = _input(rec, where, input_field, others, metadata)
    ex_id, generated = _example_id(rec.get(id_field), where, id_field, inp)
    example = Example(
        id=ex_id,
        input=inp,
        target=target,
        choices=tuple(choices),
        aliases=tuple(aliases),
        metadata=metadata,
        source=where,
    )
    return example, generated


def _target(rec: Mapping[str, Any], where: str, target_field: str, csv_cells: bool) -> tuple[str, list[str]]:
    """The expected output, and the further accepted outputs when the target is a list."""
    fix_target = (
        f"fill the '{target_field}' column" if csv_cells else f"add a '{target_field}' field (the expected output)"
    )
    if csv_cells and target_field not in rec:
        columns = ", ".join(str(k) for k in rec) or "none"
        raise ExampleError(
            f"{where.rsplit(':', 1)[0]}:1: the header has no '{target_field}' column (columns: {columns}); "
            f"add a '{target_field}' column, or pass target_field='<column>' to load_examples"
        )
    raw_target = rec.get(target_field)
    if raw_target is None or (isinstance(raw_target, str) and not raw_target.strip()) or raw_target == []:
        raise ExampleError(f"{where}: example has no '{target_field}'; {fix_target}")
    extra_aliases: list[str] = []
    if isinstance(raw_target, (list, tuple)):
        extra_aliases = [_scalar(t, where, target_field) for t in raw_target[1:]]
        raw_target = raw_target[0]
    target = _scalar(raw_target, where, target_field)
    if not target.strip():
        raise ExampleError(f"{where}: example has an empty '{target_field}'; {fix_target}")
    return target, extra_aliases


def _metadata(raw: Any, where: str, csv_cells: bool) -> dict[str, Any]:
    """The record's ``metadata`` mapping ({} when absent; a CSV cell holds it as a JSON object)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str) and csv_cells:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ExampleError(f'{where}: \'metadata\' must be a JSON object such as {{"topic": "x"}}')
        return parsed
    raise ExampleError(f"{where}: 'metadata' must be a mapping, found {type(raw).__name__}")


def _input(
    rec: Mapping[str, Any], where: str, input_field: str, others: Mapping[str, Any], metadata: dict[str, Any]
) -> str | dict[str, Any]:
    """The input: the `input_field` (a string or named fields), else the record's other fields.

    Fields next to an `input_field` are kept as `metadata` (added to it here)."""
    if input_field not in rec:
        if not others:
            raise ExampleError(
                f"{where}: example has no '{input_field}' and no named input fields; "
                f"add an '{input_field}' field (or fields the template uses)"
            )
        return {str(k): ("" if v is None else v) for k, v in others.items()}
    raw_input = rec[input_field]
    inp: str | dict[str, Any]
    if raw_input is None:
        raise ExampleError(f"{where}: '{input_field}' is empty; give the example an input")
    if isinstance(raw_input, Mapping):
        inp = {str(k): v for k, v in raw_input.items()}
    elif isinstance(raw_input, (str, int, float, bool)):
        inp = _scalar(raw_input, where, input_field)
    else:
        raise ExampleError(
            f"{where}: '{input_field}' must be a string or a mapping of named fields, found {type(raw_input).__name__}"
        )
    for k, v in others.items():
        metadata.setdefault(str(k), v)
    return inp


def _example_id(raw_id: Any, where: str, id_field: str, inp: str | Mapping[str, Any]) -> tuple[str, bool]:
    """The example's id, and whether it was generated (no id given: a hash of the input)."""
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        return _content_id(inp), True
    if isinstance(raw_id, (str, int, float)) and not isinstance(raw_id, bool):
        return str(raw_id).strip(), False
    raise ExampleError(f"{where}: '{id_field}' must be a string or a number, found {type(raw_id).__name__}")


def _scalar(value: Any, where: str, field_name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # 12.0 -> "12.0"; the numeric metric compares values, not spellings
    raise ExampleError(f"{where}: '{field_name}' must be a string, number or boolean, found {type(value).__name__}")


def _string_list(value: Any, where: str, field_name: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split("|") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [_scalar(v, where, field_name) for v in value]
    raise ExampleError(
        f"{where}: '{field_name}' must be a list (or a '|'-separated string), found {type(value).__name__}"
    )


def _content_id(inp: str | Mapping[str, Any]) -> str:
    return "h" + sha256_hex(canonical_json(dict(inp) if isinstance(inp, Mapping) else inp), 15)


def examples_fingerprint(examples: Iterable[Example]) -> str:
    """SHA-256 hex of the examples' :meth:`Example.to_dict` in id order (file order does not matter)."""
    dicts = sorted((ex.to_dict() for ex in examples), key=lambda d: (d["id"], canonical_json(d)))
    return sha256_hex(canonical_json(dicts))
