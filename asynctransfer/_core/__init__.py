"""The pure core: decisions and arithmetic, no I/O, no event loop, no wall clock.

Every module here imports only the standard library (a guard test enforces it), so it can be
tested exhaustively and fast, with a fake clock where time matters.
"""
