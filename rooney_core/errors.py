"""Exception types. Every message names what a trader or engineer needs to act on."""

from __future__ import annotations


class RooneyError(Exception):
    """Base class of every error raised on purpose by rooney_core."""


class ConfigError(RooneyError):
    """A config file is missing, malformed, or contradicts another one (names file and key)."""


class DataValidationError(RooneyError):
    """A raw data file breaks one or more rules. Carries every problem found (up to a cap)."""

    def __init__(self, path: str, problems: list[DataProblem]):
        self.path = path
        self.problems = problems
        head = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{path}: {len(problems)} problem(s)\n{head}{more}")


class DataProblem:
    """One broken rule: where (line number in the file, or timestamp) and which rule."""

    __slots__ = ("path", "line", "timestamp", "rule", "detail")

    def __init__(
        self,
        path: str,
        rule: str,
        detail: str,
        line: int | None = None,
        timestamp: str | None = None,
    ):
        self.path = path
        self.rule = rule
        self.detail = detail
        self.line = line
        self.timestamp = timestamp

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.timestamp is not None:
            where.append(f"timestamp {self.timestamp}")
        loc = ", ".join(where) if where else "file"
        return f"{self.path}: {loc}: [{self.rule}] {self.detail}"

    def __repr__(self) -> str:
        return f"DataProblem({self})"


class FeatureError(RooneyError):
    """A feature cannot be computed (unknown name, missing input)."""
