"""``python -m upvest_async``: the ``upvest-async`` command line."""

from .cli import main

main()
