"""Domain: the trader's vocabulary as immutable data (symbols, specs, events, orders, client
ids, intents, config and error kinds). Imports nothing else of mm_trio."""
