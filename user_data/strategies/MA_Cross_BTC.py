"""MA_Cross_BTC: fast/slow EMA crossover on BTC/USDT 1m candles.

Enters when EMA 4 crosses above EMA 9 and exits on the cross back down. The signal
strength grows with the momentum behind the cross (three-candle move measured in ATRs) and with
volume above its recent average.
"""

import numpy as np
import talib.abstract as ta
from btcw_signals import BtcWatcherSignals
from freqtrade.strategy import IStrategy
from pandas import DataFrame
from technical import qtpylib


class MA_Cross_BTC(BtcWatcherSignals, IStrategy):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False
    process_only_new_candles = True
    startup_candle_count = 30

    minimal_roi = {"0": 0.05}
    stoploss = -0.03
    use_exit_signal = True
    exit_profit_only = False

    btcw_indicators = ("ema_fast", "ema_slow", "atr", "volume_ratio")

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["ema_fast"] = ta.EMA(dataframe, timeperiod=4)
        dataframe["ema_slow"] = ta.EMA(dataframe, timeperiod=9)
        dataframe["atr"] = ta.ATR(dataframe, timeperiod=14)
        dataframe["volume_ratio"] = dataframe["volume"] / dataframe["volume"].rolling(20).mean()
        momentum = (dataframe["close"] - dataframe["close"].shift(3)).abs() / dataframe["atr"]
        volume_boost = (dataframe["volume_ratio"] - 1).clip(0, 1).fillna(0)
        dataframe["signal_strength"] = (
            0.3 + 0.5 * np.tanh(momentum / 2) + 0.2 * volume_boost
        ).clip(0, 1)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        cross_up = qtpylib.crossed_above(dataframe["ema_fast"], dataframe["ema_slow"])
        dataframe.loc[cross_up & (dataframe["volume"] > 0), ["enter_long", "enter_tag"]] = (
            1,
            "ema_cross_up",
        )
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        cross_down = qtpylib.crossed_below(dataframe["ema_fast"], dataframe["ema_slow"])
        dataframe.loc[cross_down & (dataframe["volume"] > 0), ["exit_long", "exit_tag"]] = (
            1,
            "ema_cross_down",
        )
        return dataframe
