"""RSI_ETH: RSI mean reversion on ETH/USDT 1m candles.

Enters when RSI(5) is oversold (under 30) and exits when it is overbought (over 70); a short RSI
suits 1m candles. The deeper into the zone, the stronger the signal: RSI 30 gives 0.3, RSI 20
gives 0.8, RSI 16 or lower 1.0 (and the mirror image above 70).
"""

import talib.abstract as ta
from btcw_signals import BtcWatcherSignals
from freqtrade.strategy import IStrategy
from pandas import DataFrame


class RSI_ETH(BtcWatcherSignals, IStrategy):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False
    process_only_new_candles = True
    startup_candle_count = 30

    minimal_roi = {"0": 0.05}
    stoploss = -0.03
    use_exit_signal = True
    exit_profit_only = False

    oversold = 30
    overbought = 70
    btcw_indicators = ("rsi",)

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=5)
        zone_depth = (self.oversold - dataframe["rsi"]).where(
            dataframe["rsi"] < 50, dataframe["rsi"] - self.overbought
        )
        dataframe["signal_strength"] = (0.3 + zone_depth / 20).clip(0, 1)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        oversold = (dataframe["rsi"] < self.oversold) & (dataframe["volume"] > 0)
        dataframe.loc[oversold, ["enter_long", "enter_tag"]] = (1, "rsi_oversold")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        overbought = (dataframe["rsi"] > self.overbought) & (dataframe["volume"] > 0)
        dataframe.loc[overbought, ["exit_long", "exit_tag"]] = (1, "rsi_overbought")
        return dataframe
