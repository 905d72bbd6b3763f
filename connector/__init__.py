"""source-openai-compatible: an Airbyte source that enriches table rows through any
OpenAI-compatible chat-completions endpoint.

The command line is :mod:`connector.cli`; the commands are :mod:`connector.airbyte.commands`.
"""

__version__ = "0.1.0"
