"""Apps: what the CLI runs -- live trading, replay, recording and the paper venue."""
