"""One exception type for every user-facing input problem.

The CLIs catch :class:`InputError` and print its message as a single line, so each message names
the file, key or line at fault.
"""


class InputError(Exception):
    """Bad user input (config, rules, corpus, gold or review file); the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
