"""Request members checked against botocore's model, with Lambda's wording for what fails.

AWS names every broken member of a request in one ValidationException: `N validation errors detected:
Value 'x' at 'member' failed to satisfy constraint: ...; ...`. The patterns quoted are the model's own.
"""

from __future__ import annotations

import re
from typing import Any

from lambdalet.api.errors import invalid, validation

# FunctionName as most operations take it (no dots; $LATEST or an alias/version qualifier).
FUNCTION_NAME = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
                 r"(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?")
# NamespacedFunctionName: GetFunction, GetFunctionConfiguration, DeleteFunction, Invoke, ListVersionsByFunction.
NAMESPACED_FUNCTION_NAME = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-"
                            r"\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|"
                            r"[a-zA-Z0-9-_]+))?")
# FunctionUrlFunctionName: the function URL operations (a qualifier may not be a version number).
URL_FUNCTION_NAME = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
                     r"(\d{12}:)?(function:)?([a-zA-Z0-9-_]{1,64})(:((?!\d+$)[0-9a-zA-Z-_]+))?")
MAX_NAME = {FUNCTION_NAME: 140, NAMESPACED_FUNCTION_NAME: 256, URL_FUNCTION_NAME: 140}

# Qualifier query parameters.
QUALIFIER = r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+"  # NumericLatestPublishedOrAliasQualifier
URL_QUALIFIER = r"((?!^\d+$)^[0-9a-zA-Z-_]+$)"  # FunctionUrlQualifier
PLAIN_QUALIFIER = r"(|[a-zA-Z0-9$_-]+)"  # Qualifier (provisioned concurrency, event invoke configs)

ROLE = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
ALIAS = r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)"
ALIAS_VERSION = r"(\$LATEST(\.PUBLISHED)?|[0-9]+)"  # VersionWithLatestPublished

_COMPILED: dict[str, re.Pattern[str]] = {}

# A name, name:qualifier, partial ARN (123456789012:function:name) or full ARN, taken apart.
_LOCATOR = re.compile(r"(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:(?P<region>(?:eusc-)?[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+"
                      r"-\d):)?(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9-_.]+)"
                      r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9-_]+))?")


def matches(value: str, pattern: str) -> bool:
    """True when the whole value matches the model's pattern (as AWS applies it)."""
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = _COMPILED[pattern] = re.compile(pattern)
    return compiled.fullmatch(value) is not None


def shown(value: Any) -> str:
    """A value as AWS quotes it in a constraint message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"'{str(value).lower()}'"
    return f"'{value}'"


def pattern_error(value: Any, member: str, pattern: str) -> str:
    return (f"Value {shown(value)} at '{member}' failed to satisfy constraint: Member must satisfy regular "
            f"expression pattern: {pattern}")


def max_length_error(value: Any, member: str, limit: int) -> str:
    return (f"Value {shown(value)} at '{member}' failed to satisfy constraint: Member must have length less "
            f"than or equal to {limit}")


def min_value_error(value: Any, member: str, limit: int) -> str:
    return (f"Value {shown(value)} at '{member}' failed to satisfy constraint: Member must have value greater "
            f"than or equal to {limit}")


def max_value_error(value: Any, member: str, limit: int) -> str:
    return (f"Value {shown(value)} at '{member}' failed to satisfy constraint: Member must have value less "
            f"than or equal to {limit}")


def null_error(member: str) -> str:
    return f"Value null at '{member}' failed to satisfy constraint: Member must not be null"


def check_string(errors: list[str], value: Any, member: str, pattern: str | None = None,
                 max_len: int | None = None, required: bool = False) -> None:
    """Append what is wrong with a string member (nothing when it is absent and optional)."""
    if value is None:
        if required:
            errors.append(null_error(member))
        return
    if not isinstance(value, str):
        errors.append(f"Value {shown(value)} at '{member}' failed to satisfy constraint: Member must be a string")
        return
    if max_len is not None and len(value) > max_len:
        errors.append(max_length_error(value, member, max_len))
    if pattern is not None and not matches(value, pattern):
        errors.append(pattern_error(value, member, pattern))


def check_function_name(errors: list[str], raw: Any, pattern: str = FUNCTION_NAME) -> None:
    check_string(errors, raw, "functionName", pattern, MAX_NAME.get(pattern), required=True)


def locate(raw: str) -> tuple[str, str | None, str | None, str | None]:
    """(name, qualifier, account, region) of a name or ARN that passed its pattern."""
    m = _LOCATOR.fullmatch(raw)
    if m is None:
        return raw, None, None, None
    return m.group("name"), m.group("qualifier"), m.group("account"), m.group("region")


def max_items_errors(raw: str | None, limit: int = 10000) -> list[str]:
    if raw is None:
        return []
    try:
        value = int(raw)
    except ValueError:
        return [f"Value {shown(raw)} at 'maxItems' failed to satisfy constraint: Member must be an integer"]
    if value < 1:
        return [min_value_error(value, "maxItems", 1)]
    if value > limit:
        return [max_value_error(value, "maxItems", limit)]
    return []


def check_range(problems: list[str], value: Any, member: str, low: int, high: int) -> None:
    """Note a problem when value (if given) is not an integer in [low, high], worded as AWS does."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        problems.append(f"Value {shown(value)} at '{member}' failed to satisfy constraint: Member must be an integer")
    elif value > high:
        problems.append(max_value_error(value, member, high))
    elif value < low:
        problems.append(min_value_error(value, member, low))


# -- tags (TagResource, CreateFunction's Tags)
MAX_TAGS = 50
_TAG_PATTERN = r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"
_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def _tag_chars_ok(text: str) -> bool:
    return all(c.isalpha() or c.isnumeric() or c.isspace() or c in _TAG_PUNCTUATION for c in text)


def check_tags(tags: Any, existing: dict[str, str] | None = None) -> dict[str, str]:
    """The tags a request sets, validated as Lambda does (merged over existing ones for the count)."""
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise invalid("Tags must be a map of strings to strings.")
    shown = "{" + ", ".join(f"{k}={v}" for k, v in tags.items()) + "}"
    if not all(1 <= len(k) <= 128 and _tag_chars_ok(k) for k in tags):
        raise validation([f"Value '{shown}' at 'tags' failed to satisfy constraint: Map keys must satisfy "
                                "constraint: [Member must have length less than or equal to 128, Member must have "
                                "length greater than or equal to 1, Member must satisfy regular expression "
                                f"pattern: {_TAG_PATTERN}]"])
    if not all(len(v) <= 256 and _tag_chars_ok(v) for v in tags.values()):
        raise validation([f"Value '{shown}' at 'tags' failed to satisfy constraint: Map value must satisfy "
                                "constraint: [Member must have length less than or equal to 256, Member must have "
                                "length greater than or equal to 0, Member must satisfy regular expression "
                                f"pattern: {_TAG_PATTERN}]"])
    if any(k.lower().startswith("aws:") for k in tags):  # (AWS's words for this, as EC2 gives them)
        raise invalid("Tag keys starting with 'aws:' are reserved for internal use")
    if len({**(existing or {}), **tags}) > MAX_TAGS:
        raise invalid("Number of tags exceeds function tag limit.")
    return dict(tags)
