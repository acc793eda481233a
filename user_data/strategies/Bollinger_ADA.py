"""Bollinger_ADA: Bollinger band breaks on ADA/USDT 1m candles.

Enters when the close falls below the lower band and exits when it rises above the upper band;
the bands are fast ones for 1m candles (10 candles, 1.5 standard deviations). Strength measures
how far outside the band the close is, in band widths (%B).
"""

from btcw_signals import BtcWatcherSignals
from freqtrade.strategy import IStrategy
from pandas import DataFrame
from technical import qtpylib


class Bollinger_ADA(BtcWatcherSignals, IStrategy):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False
    process_only_new_candles = True
    startup_candle_count = 30

    minimal_roi = {"0": 0.05}
    stoploss = -0.03
    use_exit_signal = True
    exit_profit_only = False

    btcw_indicators = ("bb_lower", "bb_middle", "bb_upper", "bb_percent")

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        bands = qtpylib.bollinger_bands(qtpylib.typical_price(dataframe), window=10, stds=1.5)
        dataframe["bb_lower"] = bands["lower"]
        dataframe["bb_middle"] = bands["mid"]
        dataframe["bb_upper"] = bands["upper"]
        width = dataframe["bb_upper"] - dataframe["bb_lower"]
        dataframe["bb_percent"] = (dataframe["close"] - dataframe["bb_lower"]) / width
        outside = (-dataframe["bb_percent"]).where(
            dataframe["bb_percent"] < 0.5, dataframe["bb_percent"] - 1
        )
        dataframe["signal_strength"] = (0.45 + 2.0 * outside).clip(0, 1)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        below = (dataframe["close"] < dataframe["bb_lower"]) & (dataframe["volume"] > 0)
        dataframe.loc[below, ["enter_long", "enter_tag"]] = (1, "bb_lower_break")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        above = (dataframe["close"] > dataframe["bb_upper"]) & (dataframe["volume"] > 0)
        dataframe.loc[above, ["exit_long", "exit_tag"]] = (1, "bb_upper_break")
        return dataframe
