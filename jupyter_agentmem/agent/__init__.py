"""One turn of the agent: context -> model -> tools -> state, and the settings that shape it.

Sits above ``model`` (the SDK adapter, tools, prompts) and ``memory`` (state, manager);
below the faces (``notebook``, ``server``), which drive it.
"""
