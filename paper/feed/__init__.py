"""Historical market data for replay: candles, mark prices and funding rates.

The package reads candle files into a compact columnar ``Candles`` container and funding
histories into a ``FundingSeries``, checks them, and gives the intrabar path a replay walks
inside each candle and the time-ordered merge of several symbols. Its modules:

- ``containers``: ``Candles``, ``FundingSeries``, ``Gap``, ``FeedError``, ``format_timeframe``;
- ``formats``: CSV (gzipped or not), Binance kline zips and folders, freqtrade feather and json,
  pandas ``to_json`` column layout (``table``: the parsed table they all produce, timestamps);
- ``validation``: times (order, grid, gaps), prices, timeframe inference;
- ``names``: the symbol a file name implies, the bundled data files;
- ``load``: ``load_candles`` / ``load_funding``, a file or folder to checked containers;
- ``walk``: ``intrabar_path`` and ``merge``;
- ``timerange``: freqtrade's ``YYYYMMDD-YYYYMMDD`` windows.
"""

from paper.feed.containers import Candles, FeedError, FundingSeries, Gap, format_timeframe
from paper.feed.load import load_candles, load_funding
from paper.feed.names import bundled_candles_path, bundled_funding_path, infer_symbol
from paper.feed.timerange import Timerange, TimerangeError, parse_timerange
from paper.feed.walk import intrabar_path, merge

__all__ = [
    "Candles",
    "FeedError",
    "FundingSeries",
    "Gap",
    "Timerange",
    "TimerangeError",
    "bundled_candles_path",
    "bundled_funding_path",
    "format_timeframe",
    "infer_symbol",
    "intrabar_path",
    "load_candles",
    "load_funding",
    "merge",
    "parse_timerange",
]
