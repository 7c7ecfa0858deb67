"""Published numbers to compare against, as package data: ``published.csv`` (read by ``ssl_bench.report.published``).

One row per number: source, table, protocol (the paper's protocol in words), dataset, backbone, params, method,
layer, metric, value, plus ``eval`` and ``eval_protocol`` (the ``eval``/``protocol`` of results.csv the row is
comparable with) and a free-text ``note`` (e.g. "best layer res4"). Linear rows at the paper's best layer have
layer ``best``. Method and layer use our names (``rotnet`` for Rotation, ``layer3`` for res4) so rows can be
matched with ours; the paper's names stay in the protocol text or the note. Add your own rows with a source and protocol.
"""
