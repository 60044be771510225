"""The dashboard's parts: set-up form, job controls, the views (one module each, listed in registry.py)."""
