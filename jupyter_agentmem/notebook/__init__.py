"""The IPython face: ``%load_ext`` life cycle, the ``%%agent`` / ``%agent_memory`` magics
and cell rendering. Parses and delegates; the work is done by the layers below."""
