"""BTC Watcher signal reporting for FreqTrade strategies.

A strategy mixes ``BtcWatcherSignals`` in before ``IStrategy`` and fills one extra dataframe
column, ``signal_strength`` (0..1), on the rows where it sets ``enter_long``/``exit_long``
(or the short columns). After every analysis the mixin

* appends the strength to the row's tag: ``enter_tag`` "rsi_oversold" becomes
  "rsi_oversold s=0.83", so the entry/exit webhooks (``{enter_tag}``, ``{exit_reason}``) carry it;
* reports a *new* signal on the last closed candle (one the previous candle did not have, or any
  signal on the first analysis after the bot starts) as a JSON strategy message through
  ``self.dp.send_msg``, so signals that never become orders (no free slot, pair locked) still reach
  BTC Watcher:

    {"btcw": 1, "kind": "signal", "strategy": "RSI_ETH", "pair": "ETH/USDT",
     "action": "enter_long", "signal_strength": 0.83, "rate": 3391.5,
     "candle": "2026-11-24T20:15:00+00:00", "timeframe": "1m", "enter_tag": "rsi_oversold",
     "indicators": {"rsi": 21.4}}

  (exits carry ``"exit_tag"`` instead of ``"enter_tag"``). ``indicators`` holds the last-candle
  values of the columns named in the strategy's ``btcw_indicators``.

Reporting runs only where FreqTrade analyses live candles (dry-run and live trading); backtests
keep their plain tags. An error in reporting is logged and never stops the bot.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from pandas import DataFrame

logger = logging.getLogger(__name__)

MESSAGE_VERSION = 1
STRENGTH_COLUMN = "signal_strength"
# signal column -> tag column that describes it
SIGNAL_TAGS = {
    "enter_long": "enter_tag",
    "exit_long": "exit_tag",
    "enter_short": "enter_tag",
    "exit_short": "exit_tag",
}
MAX_MESSAGE_CHARS = 4000  # FreqTrade's limit for a strategy message is 4096


def strength_tag(tag: Any, strength: Any) -> str:
    """'rsi_oversold', 0.834 -> 'rsi_oversold s=0.83' (no strength -> the tag unchanged)."""
    text = "" if tag is None or (isinstance(tag, float) and math.isnan(tag)) else str(tag)
    value = _clean_number(strength)
    if value is None or " s=" in text:
        return text
    value = min(max(value, 0.0), 1.0)
    return f"{text} s={value:.2f}".strip()


def _clean_number(value: Any) -> float | None:
    """A finite float, or None for NaN / missing / non-numeric values."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class BtcWatcherSignals:
    """Mixin for ``IStrategy``: tag signals with their strength and report new ones to BTC Watcher.

    Class attributes a strategy may set:
      ``btcw_indicators``: dataframe columns sent along with each signal (last candle values).
    """

    btcw_indicators: tuple[str, ...] = ()

    def analyze_ticker(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        """Run the strategy's analysis, then tag and report the signals of the last candle."""
        dataframe = super().analyze_ticker(dataframe, metadata)  # type: ignore[misc]
        try:
            self.btcw_tag_strength(dataframe)
            for message in self.btcw_new_signals(dataframe, metadata):
                self.dp.send_msg(json.dumps(message), always_send=False)  # type: ignore[attr-defined]
        except Exception:  # reporting must never stop trading
            logger.exception("BTC Watcher signal reporting failed for %s", metadata.get("pair"))
        return dataframe

    def btcw_tag_strength(self, dataframe: DataFrame) -> None:
        """Append ' s=<strength>' to the enter/exit tags of the rows that carry a signal."""
        if STRENGTH_COLUMN not in dataframe.columns or dataframe.empty:
            return
        for signal, tag_column in SIGNAL_TAGS.items():
            if signal not in dataframe.columns:
                continue
            rows = dataframe[signal].fillna(0).astype(bool)
            if not rows.any():
                continue
            if tag_column not in dataframe.columns:
                dataframe[tag_column] = ""
            tags = dataframe.loc[rows, tag_column].astype(object)
            strengths = dataframe.loc[rows, STRENGTH_COLUMN]
            dataframe.loc[rows, tag_column] = [
                strength_tag(tag, strength) for tag, strength in zip(tags, strengths, strict=True)
            ]

    def btcw_new_signals(self, dataframe: DataFrame, metadata: dict) -> list[dict[str, Any]]:
        """Messages for the signals that appear on the last candle (see the module docstring)."""
        if len(dataframe) == 0:
            return []
        pair = str(metadata.get("pair", ""))
        seen = self.__dict__.setdefault("_btcw_pairs_seen", set())
        first_look = pair not in seen
        seen.add(pair)
        last = dataframe.iloc[-1]
        previous = dataframe.iloc[-2] if len(dataframe) > 1 else None
        messages = []
        for signal, tag_column in SIGNAL_TAGS.items():
            if signal not in dataframe.columns or not _is_set(last.get(signal)):
                continue
            if previous is not None and _is_set(previous.get(signal)) and not first_look:
                continue  # the same signal is still on: it was reported when it appeared
            messages.append(self.btcw_message(last, pair, signal, tag_column))
        return messages

    def btcw_message(self, row: Any, pair: str, action: str, tag_column: str) -> dict[str, Any]:
        """The JSON strategy message describing one signal on candle ``row``."""
        tag = row.get(tag_column)
        tag = "" if tag is None or (isinstance(tag, float) and math.isnan(tag)) else str(tag)
        strength = _clean_number(row.get(STRENGTH_COLUMN))
        if strength is not None:
            strength = round(min(max(strength, 0.0), 1.0), 4)
        candle = row.get("date")
        message: dict[str, Any] = {
            "btcw": MESSAGE_VERSION,
            "kind": "signal",
            "strategy": type(self).__name__,
            "pair": pair,
            "action": action,
            "signal_strength": strength,
            "rate": _clean_number(row.get("close")),
            "candle": candle.isoformat() if hasattr(candle, "isoformat") else str(candle),
            "timeframe": getattr(self, "timeframe", None),
            tag_column: tag.split(" s=")[0],
            "indicators": {},
        }
        for column in self.btcw_indicators:
            value = _clean_number(row.get(column))
            if value is not None:
                message["indicators"][column] = float(f"{value:.6g}")
        while len(json.dumps(message)) > MAX_MESSAGE_CHARS and message["indicators"]:
            message["indicators"].popitem()
        return message


def _is_set(value: Any) -> bool:
    """True for a signal column value of 1 (NaN and 0 are off)."""
    number = _clean_number(value)
    return bool(number)
