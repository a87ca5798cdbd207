"""Error kinds shared across layers (bad input the user must be told about)."""


class ReplayInputError(ValueError):
    """Unusable replay input (missing file, no symbol, unknown native symbol): exit 2."""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit 2."""
