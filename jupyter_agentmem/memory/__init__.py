"""The memory engine: conversation state, summarizers, truncation, sizing and the
SessionManager. No I/O except through a store (``jupyter_agentmem.stores``)."""
