"""Custom_SOL: a multi-factor momentum score on SOL/USDT 1m candles.

Four factors each add to a bullish (or bearish) score between 0 and 1:
trend (close beyond EMA 8 beyond EMA 21) 0.3, momentum (RSI 9 past 55 / under 45 and moving that
way) 0.25, participation (volume 1.3x its 20-candle mean) 0.2, breakout (close beyond the previous
three candles' high / low) 0.25. The bot enters when the bullish score reaches 0.7 and exits when
the bearish score does; the score is the signal strength.
"""

import talib.abstract as ta
from btcw_signals import BtcWatcherSignals
from freqtrade.strategy import IStrategy
from pandas import DataFrame, Series


class Custom_SOL(BtcWatcherSignals, IStrategy):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False
    process_only_new_candles = True
    startup_candle_count = 30

    minimal_roi = {"0": 0.05}
    stoploss = -0.03
    use_exit_signal = True
    exit_profit_only = False

    threshold = 0.7
    btcw_indicators = ("ema_fast", "ema_slow", "rsi", "volume_ratio", "bull_score", "bear_score")

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        close = dataframe["close"]
        dataframe["ema_fast"] = ta.EMA(dataframe, timeperiod=8)
        dataframe["ema_slow"] = ta.EMA(dataframe, timeperiod=21)
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=9)
        dataframe["volume_ratio"] = dataframe["volume"] / dataframe["volume"].rolling(20).mean()
        rsi_rising = dataframe["rsi"] > dataframe["rsi"].shift(1)
        busy = dataframe["volume_ratio"] > 1.3

        def score(trend: Series, momentum: Series, breakout: Series) -> Series:
            return 0.3 * trend + 0.25 * momentum + 0.2 * busy + 0.25 * breakout

        dataframe["bull_score"] = score(
            (close > dataframe["ema_fast"]) & (dataframe["ema_fast"] > dataframe["ema_slow"]),
            (dataframe["rsi"] > 55) & rsi_rising,
            close > dataframe["high"].shift(1).rolling(3).max(),
        )
        dataframe["bear_score"] = score(
            (close < dataframe["ema_fast"]) & (dataframe["ema_fast"] < dataframe["ema_slow"]),
            (dataframe["rsi"] < 45) & ~rsi_rising,
            close < dataframe["low"].shift(1).rolling(3).min(),
        )
        dataframe["signal_strength"] = dataframe[["bull_score", "bear_score"]].max(axis=1)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        bullish = (dataframe["bull_score"] >= self.threshold) & (dataframe["volume"] > 0)
        dataframe.loc[bullish, ["enter_long", "enter_tag"]] = (1, "momentum_breakout")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        bearish = (dataframe["bear_score"] >= self.threshold) & (dataframe["volume"] > 0)
        dataframe.loc[bearish, ["exit_long", "exit_tag"]] = (1, "momentum_breakdown")
        return dataframe
