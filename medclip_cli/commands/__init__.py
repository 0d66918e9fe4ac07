"""One module per command; each parses options, calls the engine, and renders the result."""
