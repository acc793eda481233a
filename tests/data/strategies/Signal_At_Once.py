"""Signal_At_Once: a test strategy that signals on its first analysis.

Every candle carries an entry signal of strength 0.9, so the BTC Watcher mixin reports one on the
bot's first analysis (and FreqTrade opens a dry-run trade: the entry webhook follows). The real
signal path (bot → strategy message → webhook → grade → live page) is then seconds, not the
minutes a demo strategy may wait for its market.
"""

from btcw_signals import BtcWatcherSignals
from freqtrade.strategy import IStrategy
from pandas import DataFrame


class Signal_At_Once(BtcWatcherSignals, IStrategy):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False
    process_only_new_candles = True
    startup_candle_count = 5

    minimal_roi = {"0": 10}
    stoploss = -0.5
    use_exit_signal = False
    btcw_indicators = ("close_ratio",)

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["close_ratio"] = dataframe["close"] / dataframe["open"]
        dataframe["signal_strength"] = 0.9
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["volume"] >= 0, ["enter_long", "enter_tag"]] = (1, "at_once")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe
