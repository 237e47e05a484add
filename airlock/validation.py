from typing import Annotated

from pydantic import AfterValidator


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    return value


# Every free-text field on the wire: PostgreSQL cannot store NUL, and nothing legitimate needs it.
Text = Annotated[str, AfterValidator(_no_nul)]
