"""Request constraints checked as AWS checks them, and its ValidationException wording."""

from __future__ import annotations

from typing import Any

from lambdalet.api.errors import AwsError, invalid

MAX_TAGS = 50
_TAG_PATTERN = r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"
_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def validation_error(problems: list[str]) -> AwsError:
    """AWS's ValidationException listing every constraint a request broke."""
    count = len(problems)
    return AwsError(400, "ValidationException",
                    f"{count} validation error{'s' if count > 1 else ''} detected: {'; '.join(problems)}")


def pattern_problem(value: Any, field: str, pattern: str) -> str:
    return (f"Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy regular "
            f"expression pattern: {pattern}")


def _tag_chars_ok(text: str) -> bool:
    return all(c.isalpha() or c.isnumeric() or c.isspace() or c in _TAG_PUNCTUATION for c in text)


def check_tags(tags: Any, existing: dict[str, str] | None = None) -> dict[str, str]:
    """The tags a request sets, validated as Lambda does (merged over existing ones for the count)."""
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise invalid("Tags must be a map of strings to strings.")
    shown = "{" + ", ".join(f"{k}={v}" for k, v in tags.items()) + "}"
    if not all(1 <= len(k) <= 128 and _tag_chars_ok(k) for k in tags):
        raise validation_error([f"Value '{shown}' at 'tags' failed to satisfy constraint: Map keys must satisfy "
                                "constraint: [Member must have length less than or equal to 128, Member must have "
                                "length greater than or equal to 1, Member must satisfy regular expression "
                                f"pattern: {_TAG_PATTERN}]"])
    if not all(len(v) <= 256 and _tag_chars_ok(v) for v in tags.values()):
        raise validation_error([f"Value '{shown}' at 'tags' failed to satisfy constraint: Map value must satisfy "
                                "constraint: [Member must have length less than or equal to 256, Member must have "
                                "length greater than or equal to 0, Member must satisfy regular expression "
                                f"pattern: {_TAG_PATTERN}]"])
    if any(k.lower().startswith("aws:") for k in tags):  # (AWS's words for this, as EC2 gives them)
        raise invalid("Tag keys starting with 'aws:' are reserved for internal use")
    if len({**(existing or {}), **tags}) > MAX_TAGS:
        raise invalid("Number of tags exceeds function tag limit.")
    return dict(tags)
