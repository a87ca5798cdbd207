"""Core: the pure (sans-I/O) decisions -- grid strategy, position and PnL, risk, the order
path and the symbol lifecycle. Events, answers and time in; intents and actions out. No trio,
no I/O, no clock reads."""
