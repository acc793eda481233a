"""MACD_DOT: MACD / signal-line crossovers on DOT/USDT 1m candles.

Enters when a fast MACD (6, 13, 5) crosses above its signal line and exits when it crosses
below. A cross far from the zero line (a turn after a real move) is stronger than one in the noise
around zero; strength scales the MACD's distance from zero by the ATR.
"""

import numpy as np
import talib.abstract as ta
from btcw_signals import BtcWatcherSignals
from freqtrade.strategy import IStrategy
from pandas import DataFrame
from technical import qtpylib


class MACD_DOT(BtcWatcherSignals, IStrategy):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False
    process_only_new_candles = True
    startup_candle_count = 40

    minimal_roi = {"0": 0.05}
    stoploss = -0.03
    use_exit_signal = True
    exit_profit_only = False

    btcw_indicators = ("macd", "macd_signal", "macd_hist", "atr")

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        macd = ta.MACD(dataframe, fastperiod=6, slowperiod=13, signalperiod=5)
        dataframe["macd"] = macd["macd"]
        dataframe["macd_signal"] = macd["macdsignal"]
        dataframe["macd_hist"] = macd["macdhist"]
        dataframe["atr"] = ta.ATR(dataframe, timeperiod=14)
        distance = dataframe["macd"].abs() / dataframe["atr"]
        dataframe["signal_strength"] = (0.3 + 0.7 * np.tanh(distance)).clip(0, 1)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        cross_up = qtpylib.crossed_above(dataframe["macd"], dataframe["macd_signal"])
        dataframe.loc[cross_up & (dataframe["volume"] > 0), ["enter_long", "enter_tag"]] = (
            1,
            "macd_cross_up",
        )
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        cross_down = qtpylib.crossed_below(dataframe["macd"], dataframe["macd_signal"])
        dataframe.loc[cross_down & (dataframe["volume"] > 0), ["exit_long", "exit_tag"]] = (
            1,
            "macd_cross_down",
        )
        return dataframe
