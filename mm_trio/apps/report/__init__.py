"""``mm-trio report``: metrics and plots of replays and live runs (one offline HTML file).

``metrics`` (pure definitions), ``load`` (replay directories, state stores), ``html``
(plotly figures and the page), ``command`` (what the CLI calls).
"""
