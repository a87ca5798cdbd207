"""Engine: the trio shell that runs the core -- the orchestrator (one shared venue
connection, the demux, the governor, one child nursery per symbol) and the symbol shell."""
