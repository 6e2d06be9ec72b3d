"""Servers shipped with asynctransfer, kept apart from the client engine.

``s3``: a local S3-compatible endpoint (``asynctransfer serve``; ``create_app`` for tests and
notebooks, see also ``asynctransfer.testing.local_s3``).
"""

from .s3 import ServerConfig, create_app, running, serve

__all__ = ["ServerConfig", "create_app", "running", "serve"]
