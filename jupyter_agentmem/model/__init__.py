"""The model side: the openai SDK adapter (our own events), tools from typed functions,
and ``{var}`` interpolation of prompts. Knows nothing of sessions or memory."""
