"""Venue access: the Exchange interface, the shared limiter and the venue implementations."""
