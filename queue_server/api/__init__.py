"""HTTP API: thin controllers that parse, build a command, call the bus and shape the answer."""
