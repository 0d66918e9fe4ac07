def search() -> None:
    """Not written yet."""
