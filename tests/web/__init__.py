"""URL downloads (http, https) and the servers they are tested against (``conftest.py``)."""
