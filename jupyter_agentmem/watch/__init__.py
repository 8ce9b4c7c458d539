"""Watching memory: process RSS against the real limit, the memory guard, the dashboard
data and widget, the per-cell watch. Takes its host (manager, monitor, settings) as
Protocols (``host.py``), so it never imports the notebook face that owns them."""
