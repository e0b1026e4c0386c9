"""NCRONTAB schedules as the Functions timer trigger reads them: six fields, seconds first.

The timer trigger parses its schedule with the NCrontab library; these rules follow it
(``*``, ``a``, ``a-b``, ``*/n``, ``a/n``, ``a-b/n``, lists joined by ``,``; English month and
day names, case-insensitive, abbreviated to any unambiguous prefix; fields split on spaces
only). Where NCrontab silently reads a likely mistake as something else, it is refused
instead: a step of 0 (read as 1), a step wider than the field, a reversed range (``22-2``
is read as ``2-22``, not as a wrap round midnight), an ambiguous name (``Ju``), and a day that
no selected month has (the timer would never fire).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.error_text import quoted

EXAMPLE = "0 */5 * * * *"
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_TIMESPAN = re.compile(r"^\d+(\.\d+)?(:\d+){1,2}(\.\d+)?$")


@dataclass(frozen=True)
class CronField:
    """One field of an NCRONTAB expression: its name, its range and the names it accepts."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    @property
    def span(self) -> str:
        """The field's range as written in an error, e.g. ``1-12 or Jan-Dec``."""
        text = f"{self.low}-{self.high}" + (" (0 is Sunday)" if self.name == "day-of-week" else "")
        if self.names:
            text += f" or {self.names[0][:3]}-{self.names[-1][:3]}"
        return text


FIELDS = (
    CronField("second", 0, 59),
    CronField("minute", 0, 59),
    CronField("hour", 0, 23),
    CronField("day", 1, 31),
    CronField("month", 1, 12, _MONTHS),
    CronField("day-of-week", 0, 6, _DAYS),
)


class _FieldError(ValueError):
    """One part of a field cannot be read."""


def ncrontab_problems(expression: str) -> list[str]:
    """What is wrong with an NCRONTAB expression, one phrase per problem; empty when it is valid."""
    if _TIMESPAN.match(expression.strip()):
        return ["this is a TimeSpan, which Azure Functions accepts only on an App Service plan; "
                "mailferry runs on Flex Consumption, so give an NCRONTAB expression with six fields "
                f"(second minute hour day month day-of-week), e.g. '{EXAMPLE}'"]
    if any(c.isspace() and c != " " for c in expression):
        return ["a tab or a line break separates fields, but the timer trigger splits fields on "
                "spaces only"]
    tokens = [t for t in expression.split(" ") if t]
    if len(tokens) != len(FIELDS):
        hint = " (seconds come first: put a 0 in front)" if len(tokens) == len(FIELDS) - 1 else ""
        return [f"it has {len(tokens)} field(s); an NCRONTAB expression has six fields "
                f"(second minute hour day month day-of-week), e.g. '{EXAMPLE}'{hint}"]
    problems: list[str] = []
    selected: list[set[int]] = []
    for field, token in zip(FIELDS, tokens, strict=True):
        try:
            selected.append(_field_values(field, token))
        except _FieldError as e:
            problems.append(f"{field.name} field {quoted(token)}: {e}")
    if not problems:
        days, months = selected[3], selected[4]
        if min(days) > max(_DAYS_IN_MONTH[m - 1] for m in months):
            problems.append(f"day field {quoted(tokens[3])} never occurs in month field {quoted(tokens[4])}, "
                            "so the timer would never fire")
    return problems


def _field_values(field: CronField, token: str) -> set[int]:
    values: set[int] = set()
    for item in token.split(","):
        if not item:
            raise _FieldError("a list has an empty item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            count = field.high - field.low + 1
            if not (step_text.isascii() and step_text.isdigit()):
                raise _FieldError(f"the step after '/' in {quoted(item)} is not a whole number")
            step = int(step_text)
            if not 1 <= step <= count:
                raise _FieldError(f"the step {step} in {quoted(item)} is not from 1 to {count}")
        if base == "*":
            first, last = field.low, field.high
        else:
            low_text, dash, high_text = base.partition("-")
            first = _value(field, low_text)
            # NCrontab reads 'a/n' as 'a-<highest>/n'.
            last = _value(field, high_text) if dash else field.high if slash else first
            if last < first:
                raise _FieldError(f"the range {quoted(base)} runs backwards (NCRONTAB would read it as "
                                  f"{last}-{first}, not wrap round); write it as two ranges joined "
                                  "by ','")
        values.update(range(first, last + 1, step))
    return values


def _value(field: CronField, text: str) -> int:
    if not text:
        raise _FieldError("a value is missing (a '-', ',' or '/' with nothing beside it)")
    if text.isascii() and text.isdigit():
        number = int(text)
        if not field.low <= number <= field.high:
            raise _FieldError(f"{number} is out of range; expected {field.span}")
        return number
    if field.names and text.isascii() and text.isalpha():
        matches = [i for i, name in enumerate(field.names) if name.lower().startswith(text.lower())]
        if len(matches) == 1:
            return field.low + matches[0]
        if matches:
            candidates = " or ".join(field.names[i] for i in matches)
            raise _FieldError(f"{quoted(text)} could be {candidates}: write three letters or more")
        raise _FieldError(f"{quoted(text)} is not a {field.name} name; expected {field.span}")
    kind = f"a number or a {field.name} name" if field.names else "a number"
    raise _FieldError(f"{quoted(text)} is not {kind}; expected {field.span}")
