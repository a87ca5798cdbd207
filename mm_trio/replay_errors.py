"""The replay's bad-input error, importable without loading the replay machinery."""


class ReplayInputError(ValueError):
    """Unusable replay input (missing file, no symbol, unknown native symbol): exit 2."""
