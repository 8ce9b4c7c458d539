"""``python -m jupyter_agentmem serve ...`` (same as the ``jupyter-agentmem`` command)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from jupyter_agentmem.serve.cli import main

    sys.exit(main())
