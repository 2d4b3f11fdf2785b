"""``python -m streams.cli``: the same as the ``durable`` command."""

from streams.cli import main

main()
