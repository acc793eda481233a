"""The strategy library: the folder of FreqTrade strategy files that bots load their class from.

Files are read with `ast`, never imported: a class counts as a strategy when it derives from
`IStrategy`, directly or through other classes of the library (a mixin such as
`BtcWatcherSignals` is not one by itself). Uploads are checked before anything is written:
a safe file name, a path that stays inside the folder, UTF-8 Python that parses, at least one
strategy class, no silent overwrite; the file is then written atomically. Whether FreqTrade can
really load the class is found out when the bot starts (the runtime shows FreqTrade's own error).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import AppError
from app.runtime import placement
from app.runtime.paths import strategies_dir

FILE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\.py$")
MAX_FILE_BYTES = 512 * 1024
BASE_CLASS = "IStrategy"
# Files of the library that every strategy relies on: never replaced or shadowed by an upload.
RESERVED_FILES = ("btcw_signals.py",)


class LibraryError(AppError):
    """A file name or upload was refused; `field` names the input at fault."""

    def __init__(self, message: str, field: str = "file"):
        super().__init__(message, field=field)
        self.field = field


@dataclass
class StrategyFile:
    """One .py file of the library and the strategy classes it defines."""

    name: str
    classes: list[str] = field(default_factory=list)
    size: int = 0
    modified: float = 0.0
    error: str = ""

    def to_dict(self) -> dict:
        """JSON form."""
        return {"file": self.name, "classes": self.classes, "size": self.size,
                "modified": self.modified, "error": self.error or None}


def library_dir() -> Path:
    """The library folder: system.freqtrade.strategies_directory, the bots' strategy_path."""
    folder = strategies_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def check_file_name(name: object, field_name: str = "file") -> str:
    """The name if it is a safe library file name, else LibraryError saying why."""
    if not isinstance(name, str) or not name:
        raise LibraryError("A file name is required (for example My_Strategy.py).", field_name)
    if "\x00" in name:
        raise LibraryError("The file name contains a NUL byte.", field_name)
    if len(name) > 67:
        raise LibraryError(f"The file name is {len(name)} characters long; at most 67 "
                           "(64 before .py) are allowed.", field_name)
    if "/" in name or "\\" in name or name.startswith("."):
        raise LibraryError(f"The file name {name!r} contains a path; give a plain file name "
                           "inside the strategy library, such as My_Strategy.py.", field_name)
    if not FILE_NAME_RE.fullmatch(name):
        raise LibraryError(f"The file name {name!r} is not allowed: use letters, digits and "
                           "underscores, not starting with a digit, ending in .py.", field_name)
    return name


def resolve(name: str, field_name: str = "file", folder: Path | None = None) -> Path:
    """The absolute path of a library file; refuses any name that would leave the folder."""
    check_file_name(name, field_name)
    base = (folder or library_dir()).resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise LibraryError(f"The file name {name!r} leaves the strategy library.", field_name)
    return path


def parse_source(source: str, name: str = "<upload>") -> ast.Module:
    """Parse Python source; a SyntaxError becomes a LibraryError with line and column."""
    try:
        return ast.parse(source, filename=name)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        raise LibraryError(f"{name} is not valid Python: {exc.msg} ({where}).",
                           "content") from exc
    except ValueError as exc:  # NUL bytes in the source
        raise LibraryError(f"{name} is not valid Python: {exc}.", "content") from exc
    except (RecursionError, MemoryError) as exc:  # deeply nested expressions
        raise LibraryError(f"{name} is nested too deeply to be read as Python.",
                           "content") from exc


def _base_name(node: ast.expr) -> str | None:
    """`IStrategy` from `IStrategy`, `strategy.IStrategy` or `Generic[IStrategy]`-free bases."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _base_name(node.value)
    return None


def class_bases(tree: ast.Module) -> dict[str, list[str]]:
    """Top-level classes of a module and the simple names of their bases."""
    return {
        node.name: [b for b in (_base_name(base) for base in node.bases) if b]
        for node in tree.body if isinstance(node, ast.ClassDef)
    }


def strategy_classes(modules: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """For each module, its classes that derive from IStrategy (resolved across all modules)."""
    bases_of: dict[str, set[str]] = {}
    for classes in modules.values():
        for cls, bases in classes.items():
            bases_of.setdefault(cls, set()).update(bases)
    derived: set[str] = set()
    changed = True
    while changed:
        changed = False
        for cls, bases in bases_of.items():
            if cls not in derived and (BASE_CLASS in bases or bases & derived):
                derived.add(cls)
                changed = True
    return {mod: sorted(c for c in classes if c in derived) for mod, classes in modules.items()}


def _read_tree(path: Path) -> tuple[dict[str, list[str]], str]:
    try:
        source = path.read_text(encoding="utf-8")
        return class_bases(parse_source(source, path.name)), ""
    except LibraryError as exc:
        return {}, exc.message
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"{path.name} cannot be read: {exc}"


def _library_files(base: Path) -> list[Path]:
    """The .py files of the folder whose names pass the library's file-name rule."""
    return [path for path in sorted(base.glob("*.py"))
            if path.is_file() and FILE_NAME_RE.fullmatch(path.name)]


def scan(folder: Path | None = None) -> list[StrategyFile]:
    """Every .py file of the library with its strategy classes (files that fail to parse say so)."""
    base = folder or library_dir()
    trees: dict[str, dict[str, list[str]]] = {}
    files: dict[str, StrategyFile] = {}
    for path in _library_files(base):
        stat = path.stat()
        trees[path.name], error = _read_tree(path)
        files[path.name] = StrategyFile(path.name, size=stat.st_size, modified=stat.st_mtime,
                                        error=error)
    for name, classes in strategy_classes(trees).items():
        files[name].classes = classes
    return list(files.values())


def classes_in(file_name: str, folder: Path | None = None) -> list[str]:
    """The strategy classes a library file defines ([] for a missing or broken file)."""
    for item in scan(folder):
        if item.name == file_name:
            return item.classes
    return []


def find_class(class_name: str, folder: Path | None = None) -> list[str]:
    """The library files that define a strategy class of that name."""
    return [item.name for item in scan(folder) if class_name in item.classes]


def _shadows_module(stem: str, base: Path) -> bool:
    """True when a file of that name would hide an installed module from the bots' imports."""
    if stem in sys.stdlib_module_names or stem in sys.builtin_module_names:
        return True
    try:
        spec = importlib.util.find_spec(stem)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.origin is None:
        return spec is not None
    return Path(spec.origin).resolve().parent != base


def save_upload(file_name: object, content: bytes | str, overwrite: bool = False,
                folder: Path | None = None) -> StrategyFile:
    """Check an uploaded strategy file and write it into the library atomically.

    Refuses (LibraryError, nothing written): unsafe names, names that leave the folder or shadow
    an installed module, files over 512 KiB, non-UTF-8 or invalid Python (with the line), files
    without an IStrategy class, and an existing file unless `overwrite` is set.
    """
    base = (folder or library_dir()).resolve()
    path = resolve(file_name, "file", base)  # type: ignore[arg-type]
    name = path.name
    if name in RESERVED_FILES:
        raise LibraryError(f"{name} is BTC Watcher's signal mixin, which every strategy "
                           "imports; it cannot be uploaded or replaced.", "file")
    if _shadows_module(path.stem, base):
        raise LibraryError(f"The file name {name!r} would hide the Python module "
                           f"{path.stem!r} from the bots; choose another name.", "file")
    raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    if not raw.strip():
        raise LibraryError(f"{name} is empty.", "content")
    if len(raw) > MAX_FILE_BYTES:
        raise LibraryError(f"{name} is {len(raw) // 1024} KiB; at most "
                           f"{MAX_FILE_BYTES // 1024} KiB are allowed.", "content")
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LibraryError(f"{name} is not UTF-8 text (byte {exc.start}).", "content") from exc
    tree = parse_source(source, name)
    trees = {path.name: _read_tree(path)[0] for path in _library_files(base)}
    trees[name] = class_bases(tree)
    found = strategy_classes(trees)[name]
    if not found:
        defined = ", ".join(trees[name]) or "none"
        raise LibraryError(f"{name} defines no FreqTrade strategy: no class derives from "
                           f"IStrategy (classes found: {defined}).", "content")
    if path.exists() and not overwrite:
        raise LibraryError(f"{name} already exists in the strategy library; tick overwrite "
                           "to replace it.", "file")
    _write_atomically(path, raw, overwrite)
    stat = path.stat()
    placement.publish_sources(base, names=[name])  # other hosts get it through the database
    return StrategyFile(name, classes=found, size=stat.st_size, modified=stat.st_mtime)


def _write_atomically(path: Path, raw: bytes, overwrite: bool) -> None:
    """Write to a temporary file beside `path`, then rename (or hard-link when not replacing)."""
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if another upload created the file meanwhile
            except FileExistsError as exc:
                raise LibraryError(f"{path.name} already exists in the strategy library; "
                                   "tick overwrite to replace it.", "file") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
