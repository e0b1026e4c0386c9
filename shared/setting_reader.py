"""Reading one setting by its spec: its default, type, range or choices; problems collected."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlparse

from shared.error_text import quoted
from shared.setting_specs import SETTING_FIELD, SPECS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Options = TypeVar("Options", bound="DataclassInstance")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class SettingReader:
    """Reads settings by their specs, collecting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        """The value as set (trimmed), else the spec's default; a required one unset is a problem."""
        value = self.env.get(name)
        if value is None or value.strip() == "":
            spec = SPECS[name]
            if spec.required:
                self.problems.append(f"{name} is not set: {spec.description} Example: {spec.example}")
            return spec.default
        return value.strip()

    def require(self, name: str, why: str) -> str | None:
        """The value of a setting that ``why`` makes required."""
        value = self.raw(name)
        if not value:
            spec = SPECS[name]
            self.problems.append(f"{name} is not set but {why}: {spec.description} "
                                 f"Example: {spec.example}")
        return value

    def text(self, name: str, pattern: re.Pattern[str] | None = None, expected: str = "") -> str:
        """The value, checked against ``pattern`` when it is set."""
        value = self.raw(name) or ""
        if value and pattern is not None and not pattern.match(value):
            self.problems.append(f"{name} is {quoted(value)}, expected {expected}.")
        return value

    def choice(self, name: str) -> str:
        """One of the spec's choices, in lower case."""
        choices = SPECS[name].choices
        value = (self.raw(name) or "").lower()
        if value not in choices:
            self.problems.append(f"{name} is {quoted(value)}, expected one of: {', '.join(choices)}.")
            return choices[0]
        return value

    def https_url(self, name: str, value: str | None) -> str:
        """``value`` (from ``name``), checked to be an https:// URL when set."""
        if value:
            try:
                parsed = urlparse(value)
                valid = parsed.scheme == "https" and bool(parsed.hostname)
            except ValueError:  # e.g. an unclosed '[' of an IPv6 address
                valid = False
            if not valid:
                self.problems.append(f"{name} is {quoted(value)}, expected an https:// URL.")
        return value or ""

    def integer(self, name: str) -> int:
        """A whole number within the spec's range."""
        spec = SPECS[name]
        assert spec.low is not None and spec.high is not None, f"{name} is not an integer setting"
        low, high = spec.low, spec.high
        value = self.raw(name) or ""
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{name} is {quoted(value)}, expected a whole number from {low} to {high}.")
            return low
        if not low <= number <= high:
            self.problems.append(f"{name} is {number}, expected a whole number from {low} to {high}.")
        return number

    def boolean(self, name: str) -> bool:
        """true or false (also 1/0, yes/no)."""
        value = (self.raw(name) or "").lower()
        if value in {"true", "1", "yes"}:
            return True
        if value in {"false", "0", "no"}:
            return False
        self.problems.append(f"{name} is {quoted(value)}, expected true or false.")
        return True

    def options(self, kind: type[Options]) -> Options:
        """A dataclass whose fields say which integer setting each is read from."""
        return kind(**{f.name: self.integer(f.metadata[SETTING_FIELD]) for f in fields(kind)
                       if SETTING_FIELD in f.metadata})

    def guid(self, name: str) -> str:
        """A GUID like a tenant or client ID."""
        return self.text(name, GUID, "a GUID like 00000000-0000-0000-0000-000000000000")
