"""The strategy library: class discovery with ast, and uploads that can never leave the folder."""

from __future__ import annotations

import pytest

from app.strategies import library
from tests.strategies.conftest import STRATEGY_SOURCE

STRATEGY = STRATEGY_SOURCE


def _all_files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def test_scan_finds_the_bundled_strategies_without_importing(library_dir):
    files = {f.name: f for f in library.scan()}
    for name in ("MA_Cross_BTC", "RSI_ETH", "Custom_SOL", "Bollinger_ADA", "MACD_DOT"):
        assert files[f"{name}.py"].classes == [name]
    # The mixin alone is no strategy, even though the strategies derive from it.
    assert files["btcw_signals.py"].classes == []
    assert library.classes_in("RSI_ETH.py") == ["RSI_ETH"]
    assert library.find_class("MACD_DOT") == ["MACD_DOT.py"]


def test_upload_writes_the_file_and_lists_its_class(library_dir):
    saved = library.save_upload("My_Strategy.py", STRATEGY.encode())
    assert saved.classes == ["My_Strategy"]
    assert (library_dir / "My_Strategy.py").read_text() == STRATEGY
    assert library.classes_in("My_Strategy.py") == ["My_Strategy"]
    assert not list(library_dir.glob(".upload-*"))  # no temporary file left behind


def test_upload_refuses_to_overwrite_unless_asked(library_dir):
    library.save_upload("My_Strategy.py", STRATEGY)
    changed = STRATEGY.replace("-0.05", "-0.10")
    with pytest.raises(library.LibraryError, match="already exists") as err:
        library.save_upload("My_Strategy.py", changed)
    assert err.value.field == "file"
    assert (library_dir / "My_Strategy.py").read_text() == STRATEGY
    library.save_upload("My_Strategy.py", changed, overwrite=True)
    assert (library_dir / "My_Strategy.py").read_text() == changed


def test_syntax_error_names_the_line(library_dir):
    broken = STRATEGY.replace("def populate_exit_trend(self, dataframe, metadata):",
                              "def populate_exit_trend(self, dataframe, metadata)")
    with pytest.raises(library.LibraryError, match=r"not valid Python: .*line 16") as err:
        library.save_upload("Broken.py", broken)
    assert err.value.field == "content"
    assert not (library_dir / "Broken.py").exists()


def test_a_file_without_istrategy_class_is_refused(library_dir):
    with pytest.raises(library.LibraryError, match="no class derives from IStrategy.*Helper"):
        library.save_upload("Helper.py", "class Helper:\n    pass\n")
    assert not (library_dir / "Helper.py").exists()


def test_a_class_deriving_from_another_library_strategy_counts(library_dir):
    source = "from RSI_ETH import RSI_ETH\n\n\nclass RSI_ETH_Slow(RSI_ETH):\n    oversold = 25\n"
    saved = library.save_upload("RSI_ETH_Slow.py", source)
    assert saved.classes == ["RSI_ETH_Slow"]


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfeclass X: pass", "not UTF-8"),
    (b"   \n", "is empty"),
    (b"x" * (library.MAX_FILE_BYTES + 1), "at most 512 KiB"),
])
def test_bad_content_is_refused(library_dir, content, message):
    before = _all_files(library_dir.parent)
    with pytest.raises(library.LibraryError, match=message):
        library.save_upload("Bad.py", content)
    assert _all_files(library_dir.parent) == before


PATH_TRICKS = [
    ("../x.py", "contains a path"),
    ("../../etc/cron.d/x.py", "contains a path"),
    ("/etc/passwd", "contains a path"),
    ("/tmp/x.py", "contains a path"),
    ("sub/x.py", "contains a path"),
    ("..\\x.py", "contains a path"),
    ("C:\\x.py", "contains a path"),
    (".hidden.py", "contains a path"),
    ("..", "contains a path"),
    ("x.py\x00.txt", "NUL byte"),
    ("\x00", "NUL byte"),
    ("A" * 10_000 + ".py", "10003 characters long"),
    ("stratégie.py", "not allowed"),
    ("策略.py", "not allowed"),
    ("x.py\n", "not allowed"),
    ("x.txt", "not allowed"),
    ("x.py.exe", "not allowed"),
    ("1x.py", "not allowed"),
    ("my strategy.py", "not allowed"),
    ("", "required"),
    (None, "required"),
]


@pytest.mark.parametrize("name, message", PATH_TRICKS)
def test_path_tricks_in_file_names_write_nothing(library_dir, name, message):
    before = _all_files(library_dir.parent)
    with pytest.raises(library.LibraryError, match=message) as err:
        library.save_upload(name, STRATEGY)
    assert err.value.field == "file"
    assert _all_files(library_dir.parent) == before


@pytest.mark.parametrize("name", ["pandas.py", "os.py", "freqtrade.py", "talib.py", "json.py"])
def test_names_that_would_hide_a_module_from_the_bots_are_refused(library_dir, name):
    with pytest.raises(library.LibraryError, match="would hide the Python module"):
        library.save_upload(name, STRATEGY)
    assert not (library_dir / name).exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_the_shared_signal_mixin_cannot_be_replaced(library_dir, overwrite):
    before = (library_dir / "btcw_signals.py").read_bytes()
    source = STRATEGY + "\n\nclass BtcWatcherSignals:\n    pass\n"
    with pytest.raises(library.LibraryError, match="signal mixin") as raised:
        library.save_upload("btcw_signals.py", source, overwrite=overwrite)
    assert raised.value.field == "file"
    assert (library_dir / "btcw_signals.py").read_bytes() == before


def test_deeply_nested_source_is_refused_not_a_crash(library_dir, client, api_token):
    nested = "x = " + "1+" * 100_000 + "1\n" + STRATEGY  # ast construction recurses
    with pytest.raises(library.LibraryError, match="nested too deeply"):
        library.save_upload("Deep.py", nested)
    response = client.post("/api/v1/strategies/library", json={
        "file_name": "Deep.py", "content": nested}, headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 400 and "nested too deeply" in response.get_json()["message"]
    assert not (library_dir / "Deep.py").exists()


def test_resolve_stays_inside_the_folder(library_dir):
    assert library.resolve("RSI_ETH.py") == (library_dir / "RSI_ETH.py").resolve()
    with pytest.raises(library.LibraryError):
        library.resolve("../RSI_ETH.py")


def test_a_symlink_pointing_out_of_the_library_is_not_followed_for_writes(library_dir, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("# not yours\n")
    (library_dir / "Link.py").symlink_to(outside)
    with pytest.raises(library.LibraryError, match="leaves the strategy library"):
        library.save_upload("Link.py", STRATEGY, overwrite=True)
    assert outside.read_text() == "# not yours\n"
