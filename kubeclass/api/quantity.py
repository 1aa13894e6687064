"""Kubernetes resource quantities: exact parsing (Fraction) and canonical printing.

Canonical form follows apimachinery: the suffix family of the input is kept (binary `Ki..Ei`, decimal
`n..E`, or exponent `eN`), values are rounded up to nano units, and the largest suffix that keeps an
integer mantissa is chosen. `1000m` -> `1`, `0.5Gi` -> `512Mi`, `1536` stays `1536`.
"""
from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

QUANTITY_RE = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
PARSE_ERROR = f"quantities must match the regular expression '{QUANTITY_RE}'"

_BIN = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DEC = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DEC_SUFFIX = {v: k for k, v in _DEC.items()}
_BIN_SUFFIX = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_num_re = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")
_split_re = re.compile(r"^([+-]?[0-9.]+)(.*)$")
_exp_re = re.compile(r"^[eE]([+-]?\d+)$")

BINARY, DECIMAL, EXPONENT = "BinarySI", "DecimalSI", "DecimalExponent"


class QuantityError(ValueError):
    pass


class Quantity:
    __slots__ = ("value", "format")

    def __init__(self, value: Fraction, fmt: str = DECIMAL):
        self.value = value
        self.format = fmt

    @classmethod
    def parse(cls, s: str | int | float) -> "Quantity":
        if type(s) is str:
            value, fmt = _parse_str(s)
            return cls(value, fmt)
        return cls._parse(s)

    @classmethod
    def _parse(cls, s: str | int | float) -> "Quantity":
        if isinstance(s, bool):
            raise QuantityError(PARSE_ERROR)
        if isinstance(s, int):
            return cls(Fraction(s), DECIMAL)
        if isinstance(s, float):
            if math.isnan(s) or math.isinf(s):
                raise QuantityError(PARSE_ERROR)
            return cls(Fraction(repr(s)) if "e" not in repr(s) else Fraction(s), DECIMAL)
        if not isinstance(s, str) or not s:
            raise QuantityError("quantities must match the regular expression '" + QUANTITY_RE + "'")
        m = _split_re.match(s.strip() if s.strip() == s else "\x00")
        if not m or not _num_re.match(m.group(1)):
            raise QuantityError(PARSE_ERROR)
        num, suffix = m.group(1), m.group(2)
        base = Fraction(num)
        if suffix in _BIN:
            return cls(base * (1024 ** _BIN[suffix]), BINARY)
        if suffix in _DEC:
            return cls(base * Fraction(10) ** _DEC[suffix], DECIMAL)
        em = _exp_re.match(suffix)
        if em:
            return cls(base * Fraction(10) ** int(em.group(1)), EXPONENT)
        raise QuantityError("unable to parse quantity's suffix")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __lt__(self, other: "Quantity") -> bool:
        return self.value < other.value

    def __add__(self, other: "Quantity") -> "Quantity":
        # apimachinery: adding to a zero quantity takes the other operand's format
        return Quantity(self.value + other.value, other.format if self.value == 0 else self.format)

    def __sub__(self, other: "Quantity") -> "Quantity":
        return Quantity(self.value - other.value, self.format)

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Quantity({self.canonical()!r})"

    def milli(self) -> int:
        return math.ceil(self.value * 1000)

    def is_integer(self) -> bool:
        return self.value.denominator == 1

    def canonical(self) -> str:
        return _canonical(self.value.numerator, self.value.denominator, self.format)


@functools.lru_cache(maxsize=65536)
def _canonical(num: int, den: int, fmt: str) -> str:
    """Integer arithmetic on nano units: round up to 1n, then the largest suffix with an integer mantissa."""
    nanos = -((-num * 10**9) // den) if num >= 0 else -((-num * 10**9 + den - 1) // den)
    if nanos == 0:
        return "0"
    sign = "-" if nanos < 0 else ""
    a = abs(nanos)
    if fmt == BINARY and (a < 1024 * 10**9 or a % 10**9):
        fmt = DECIMAL
    if fmt == BINARY:
        n, k = a // 10**9, 0
        while k < 6 and n % 1024 == 0:
            n //= 1024
            k += 1
        return f"{sign}{n}{_BIN_SUFFIX[k]}"
    e = -9
    while e < 18 and a % 1000 == 0:
        a //= 1000
        e += 3
    if fmt == EXPONENT:
        return f"{sign}{a}" + (f"e{e}" if e else "")
    return f"{sign}{a}{_DEC_SUFFIX[e]}"


@functools.lru_cache(maxsize=4096)
def _parse_str(s: str) -> tuple[Fraction, str]:
    q = Quantity._parse(s)
    return q.value, q.format


@functools.lru_cache(maxsize=4096)
def _canonical_str(s: str) -> str:
    return Quantity.parse(s).canonical()


def parse(s) -> Quantity:
    return Quantity.parse(s)


def value(s) -> Fraction:
    """The exact value of a quantity (string or number), without building a Quantity."""
    if type(s) is str:
        return _parse_str(s)[0]
    return Quantity.parse(s).value


def canonical(s) -> str:
    """Canonical string of a quantity; memoized, since the same few strings recur in every object."""
    if type(s) is str:
        return _canonical_str(s)
    return Quantity.parse(s).canonical()


def canonical_binary(n: int) -> str:
    """An integer amount (bytes) as a BinarySI quantity: 134217728 -> 128Mi."""
    return _canonical(n, 1, BINARY)


def zero() -> Quantity:
    return Quantity(Fraction(0))


def add_lists(a: dict, b: dict) -> dict:
    """Sum two ResourceLists of canonical strings; returns canonical strings."""
    out = dict(a)
    for k, v in b.items():
        out[k] = (Quantity.parse(out[k]) + Quantity.parse(v)).canonical() if k in out else v
    return out
