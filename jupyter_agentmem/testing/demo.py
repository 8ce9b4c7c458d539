"""Moved to :mod:`jupyter_agentmem.demo.reply`; kept as an alias."""

from __future__ import annotations

from jupyter_agentmem.demo.reply import *  # noqa: F403
from jupyter_agentmem.demo.reply import __all__ as __all__
