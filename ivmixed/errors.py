"""Errors the command line catches, and the quoting of user input in messages (importable without torch or numpy)."""

from __future__ import annotations

__all__ = ["NonFiniteLatents", "SamplingFailed", "WriteFailed", "quoted", "shorten_quotes"]

#: quoted input longer than this many characters is shortened in messages
QUOTE_LIMIT = 80


class NonFiniteLatents(FloatingPointError):
    """NaN or Inf appeared in the latents during sampling; the message names the step and sub-step."""


class SamplingFailed(RuntimeError):
    """A score model, the scheduler or the callback raised during sampling; the message names the step and sub-step."""


class WriteFailed(OSError):
    """Writing an output file failed (no space left, no permission, a vanished folder); the message is in words."""

    def __str__(self) -> str:  # OSError would print "[Errno N] ..."
        return str(self.strerror)


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``repr(text)``, shortened to its start and end when longer than ``limit`` characters, with the full length.

    >>> quoted("a bright blob")
    "'a bright blob'"
    >>> quoted("x" * 1000, limit=10)
    "'xxxxxx…xxx' (1,000 characters)"
    """
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    head, tail = text[: limit * 2 // 3], text[-(limit // 3) :]
    return repr(f"{head}\x00{tail}").replace("\\x00", "…", 1) + f" ({len(text):,} characters)"


def shorten_quotes(message: str, *inputs: str, limit: int = QUOTE_LIMIT) -> str:
    """``message`` with every ``repr`` of a long ``input`` in it replaced by :func:`quoted` (for messages made elsewhere)."""
    for text in inputs:
        if isinstance(text, str) and len(text) > limit:
            message = message.replace(repr(text), quoted(text, limit)).replace(text, quoted(text, limit))
    return message
