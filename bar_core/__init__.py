"""BAR (Budget-Aware Regularization) as a library: gates, volume, barrier, schedule, losses, models,
data, a thread-safe trainer, run folders, connectivity analysis and the physically pruned network.

It never imports streamlit: the dashboard in app/ talks to it through Job, records and run folders.
"""
