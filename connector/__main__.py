"""``python -m connector``: the same as the ``source-openai-compatible`` command."""

from connector.cli import main

main()
