"""One module per kind: observe (async, reads), decide (pure), and the shared apply step in base."""
