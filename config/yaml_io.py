"""The one YAML library for config files: ruamel.yaml, YAML 1.2, for reading and writing.

`load()` reads plain Python data (a plain 22:30 or on stays text, as YAML 1.2 says);
`round_trip()` gives the editor that keeps an owner's comments, key order and list styles when
a page saves a file; `dump()` writes fresh data.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

__all__ = ["YAMLError", "dump", "error_location", "load", "round_trip"]


def load(text: str) -> Any:
    """Plain data (dicts, lists, scalars) from YAML text; YAMLError when it is not YAML."""
    return YAML(typ="safe", pure=True).load(text)


def round_trip() -> YAML:
    """A loader/dumper that keeps comments, key order, quotes and list styles."""
    editor = YAML()
    editor.preserve_quotes = True
    editor.width = 100
    return editor


def dump(data: Any) -> str:
    """YAML text for plain data, keys in their order."""
    out = io.StringIO()
    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = False
    writer.sort_base_mapping_type_on_output = False
    writer.dump(data, out)
    return out.getvalue()


def error_location(exc: YAMLError) -> tuple[str, str]:
    """(" at line L, column C" or "", the problem) of a YAML error, for messages."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return where, problem
