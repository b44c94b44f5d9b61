"""The ``coldoc`` backend: the client and the server of one protocol."""
