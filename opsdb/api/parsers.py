"""The API's JSON parser: DRF's, refusing documents nested deeper than any request of ours (400).

Python's JSON decoder recurses once per level: ``[`` × 100,000 raised RecursionError (a 500), and a
document just under the interpreter's limit would make later recursive work (error messages,
``repr``) fail instead. No request body of the API nests more than a handful of levels.
"""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32


def depth_exceeds(data, limit: int) -> bool:
    """Whether ``data`` (parsed JSON) nests lists/objects more than ``limit`` deep; no recursion."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > limit:
            return True
        stack.extend((item, depth + 1) for item in value)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        message = f"The JSON document is nested deeper than {MAX_DEPTH} levels."
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(message) from None
        if depth_exceeds(data, MAX_DEPTH):
            raise ParseError(message)
        return data
