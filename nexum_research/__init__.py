"""The research example: an agent that searches the web and reads pages, made durable by Nexum.

`tools.TOOLSET` holds its two tools (run by the worker), `offline_model` the stand-in models that
need no API key, `settings` what the tools and the agent read. The library is `nexum_pydantic_ai`;
this package only uses it.
"""

AGENT_NAME = "research"
"""The research agent's name: it is part of every unit key of its runs."""
WEB_SEARCH = "web_search"
VISIT_WEBPAGE = "visit_webpage"
TOOL_NAMES = (WEB_SEARCH, VISIT_WEBPAGE)
