def probe() -> None:
    """Not written yet."""
