"""The dashboard's parts: set-up form, job controls, the six views, teaching notes."""
