"""Spark SQL expressions evaluated on single rows in Python, giving what the offline engine gives.

The streaming job applies a group-by's query (`selects`, `wheres`) to each decoded event without Spark.
`compile_expression` parses the text once with sqlglot (dialect "spark"), types the tree the way Spark's
analyzer does with ANSI mode on (Spark 4's default, which the offline engine runs with), applies the
optimizer rewrites that decide which rows raise, and compiles the tree to nested closures;
`Expression.evaluate` runs them on one row.

Matched exactly, value for value and type for type: null propagation and three-valued logic; Spark's
implicit casts (ANSI type coercion, including strings promoted to numbers in arithmetic); decimal literals
(`0.05` is `decimal(2,2)`) with Spark's precision and scale rules and HALF_UP rounding; 32-bit floats; NaN
equal to itself and greater than any other double; ANSI errors (bad casts, overflow, division by zero) as
`EvaluationError` on the rows where Spark fails the query. `EXP`, `LN`, `LOG` and `POW` run Java's
StrictMath algorithms (fdlibm), bit for bit, because Python's libm differs in the last bit for a few
percent of inputs.

Supported: column references (backticks, case-insensitive), literals (int, bigint by size, decimal, double
with an exponent or `D`, float `F`, `L`, `BD`, strings, booleans, NULL), `+ - * / % DIV`, unary minus,
`= == <> != < <= > >= <=>`, `IS [NOT] DISTINCT FROM`, `AND OR NOT`, `IS [NOT] NULL`, `IN (...)`,
`BETWEEN`, `LIKE [ESCAPE]`, both `CASE` forms, `IF`, `COALESCE`/`NVL`/`IFNULL`, `CAST` and `TRY_CAST`
to boolean, int, bigint, float, double, string, binary and decimal(p,s), and the functions `abs`,
`lower`/`lcase`, `upper`/`ucase`, `length`/`char_length`, `concat`/`||`, `substring`/`substr`,
`trim`/`ltrim`/`rtrim`, `floor`, `ceil`/`ceiling`, `round` (HALF_UP), `greatest`, `least`, `sqrt`,
`pow`/`power`, `exp`, `ln`, `log`, `mod`.

Refused (`UnsupportedExpression`, at compile time): anything else; an expression whose result is a
decimal (streamed rows carry no decimals: cast it to DOUBLE) or an untyped NULL; casting a float or double
to string or decimal (Spark goes through Java's `Double.toString`, whose digits change between JVM
versions); and whatever Spark's analyzer would reject. `unsupported_reason` checks the type-free part.

Spark's optimizer decides some values and which rows fail, so the rewrites that do are mirrored: null
propagation (including IS NULL of a never-null expression), constant folding (a failing constant fails
the query, or only the rows that reach it inside CASE/IF/COALESCE), boolean and conditional
simplification, `v IN (c)` as `v = c`, reordered integer sums and products, dropped middle casts
(int -> float -> double is int -> double), and lower(upper(x)) as lower(x). Divisions read the divisor
first, as Spark's generated code does. Not mirrored: a unary `+` (sqlglot drops it; Spark casts a string
operand to double), and rarer rewrites that could skip a failing subexpression. `round` on a double reads
the double's shortest decimal form, as Java 19+ prints it; Java 17 prints a longer form for about 0.3% of
doubles, which can change a HALF_UP decision when the rounding digit is the last one printed.
"""

from __future__ import annotations

import math
import operator
import re
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache, partial
from typing import Any, TypeAlias

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from feature_assets.sql.strictmath import java_divide, strict_exp, strict_log, strict_pow
from feature_assets.sql.types import (
    BOOLEAN,
    BYTES,
    DOUBLE,
    FLOAT,
    INT,
    INT_RANGE,
    LONG,
    LONG_RANGE,
    STRING,
    TYPES,
)

__all__ = [
    "EvaluationError",
    "Expression",
    "UnsupportedExpression",
    "compile_expression",
    "referenced_columns",
    "unsupported_reason",
]


class UnsupportedExpression(ValueError):
    """An expression that streamed rows cannot evaluate exactly as Spark does; the message names the construct."""


class EvaluationError(ValueError):
    """A row on which Spark (ANSI mode) fails the query: a bad cast, an overflow, a division by zero."""


Row: TypeAlias = Mapping[str, Any]
Evaluator: TypeAlias = Callable[[Row], Any]


@dataclass(frozen=True)
class Expression:
    """A compiled expression: `evaluate(row)` gives Spark's value for the row, a Python value of `output_type`
    (int for int/long, float for float/double, str, bytes, bool) or None."""

    text: str
    output_type: str
    columns: frozenset[str]
    _evaluate: Evaluator = field(repr=False, compare=False)

    def evaluate(self, row: Row) -> Any:
        try:
            return self._evaluate(row)
        except EvaluationError as error:
            raise EvaluationError(f"{self.text}: {error}") from None


def compile_expression(text: str, input_types: Mapping[str, str]) -> Expression:
    """Compile a Spark SQL expression over columns of the given types (names from `feature_assets.sql.types`).

    Raises UnsupportedExpression when the expression cannot be evaluated exactly outside Spark, or when
    Spark would reject it."""
    tree = _parse(text)
    analyzer = _Analyzer(input_types)
    node = _optimize(analyzer.analyze(tree))
    return Expression(text, _output_type(node, text), frozenset(analyzer.used), _emit(node))


def unsupported_reason(text: str) -> str | None:
    """Why the expression cannot be compiled, judged without column types (parse and supported constructs);
    None when it may compile. Type errors (`'a' + 1`, a decimal result) show only in `compile_expression`."""
    try:
        tree = _parse(text)
        for node in tree.walk():
            _check_shape(node)
    except UnsupportedExpression as error:
        return str(error)
    return None


def referenced_columns(text: str) -> frozenset[str]:
    """The column names the expression reads, as written in it."""
    return frozenset(column.name for column in _parse(text).find_all(exp.Column))


# ---------------------------------------------------------------------------------------------------------
# Types: the row vocabulary plus the two types that exist only inside an expression, Spark's decimal(p,s)
# and the type of a bare NULL.


@dataclass(frozen=True)
class _Decimal:
    precision: int
    scale: int

    def __str__(self) -> str:
        return f"decimal({self.precision},{self.scale})"


SqlType: TypeAlias = "str | _Decimal"
VOID = "void"
_MAX_PRECISION = 38
_MIN_ADJUSTED_SCALE = 6
_INTEGRAL = (INT, LONG)
_FLOATING = (FLOAT, DOUBLE)
_NUMERIC_ORDER = {INT: 0, LONG: 1, FLOAT: 2, DOUBLE: 3}
_SPARK_NAMES = {BOOLEAN: "boolean", INT: "int", LONG: "bigint", FLOAT: "float", DOUBLE: "double"}
_SPARK_NAMES |= {STRING: "string", BYTES: "binary", VOID: "void"}


def _name(t: SqlType) -> str:
    return str(t) if isinstance(t, _Decimal) else _SPARK_NAMES[t]


def _is_numeric(t: SqlType) -> bool:
    return isinstance(t, _Decimal) or t in _NUMERIC_ORDER


def _is_fractional(t: SqlType) -> bool:
    return isinstance(t, _Decimal) or t in _FLOATING


def _decimal_for(t: SqlType) -> _Decimal:
    """The decimal type that holds every value of an integral type (Spark's DecimalType.forType)."""
    return _Decimal(10, 0) if t == INT else _Decimal(20, 0)


def _bounded(precision: int, scale: int) -> _Decimal:
    return _Decimal(min(precision, _MAX_PRECISION), min(scale, _MAX_PRECISION))


def _adjusted(precision: int, scale: int) -> _Decimal:
    """Spark's result type when a decimal operation needs more than 38 digits: keep the integral digits and
    at least 6 fractional ones."""
    if precision <= _MAX_PRECISION:
        return _Decimal(precision, scale)
    integral_digits = precision - scale
    return _Decimal(_MAX_PRECISION, max(_MAX_PRECISION - integral_digits, min(scale, _MIN_ADJUSTED_SCALE)))


def _wider_decimal(a: _Decimal, b: _Decimal) -> _Decimal:
    scale = max(a.scale, b.scale)
    return _bounded(max(a.precision - a.scale, b.precision - b.scale) + scale, scale)


def _tightest_common(a: SqlType, b: SqlType) -> SqlType | None:
    if a == b:
        return a
    if a == VOID:
        return b
    if b == VOID:
        return a
    for integral, decimal in ((a, b), (b, a)):
        if integral in _INTEGRAL and isinstance(decimal, _Decimal):
            whole = _decimal_for(integral)
            wide = decimal.precision - decimal.scale >= whole.precision - whole.scale and decimal.scale >= whole.scale
            return decimal if wide else None
    if a in _NUMERIC_ORDER and b in _NUMERIC_ORDER:
        wider = a if _NUMERIC_ORDER[a] > _NUMERIC_ORDER[b] else b
        # An integer and a float meet at double: a float cannot hold every int.
        return DOUBLE if wider == FLOAT else wider
    return None


def _wider_for_decimal(a: SqlType, b: SqlType) -> SqlType | None:
    if isinstance(a, _Decimal) and isinstance(b, _Decimal):
        return _wider_decimal(a, b)
    for other, decimal in ((a, b), (b, a)):
        if isinstance(decimal, _Decimal):
            if other in _INTEGRAL:
                return _wider_decimal(_decimal_for(other), decimal)
            if other in _FLOATING:
                return DOUBLE
    return None


def _wider_for_string(a: SqlType, b: SqlType) -> SqlType | None:
    """ANSI string promotion: a string meets an integer at bigint, a fraction at double, anything else at
    that thing."""
    if a != STRING:
        return _wider_for_string(b, a) if b == STRING and a != STRING else None
    if b in _INTEGRAL:
        return LONG
    if _is_fractional(b):
        return DOUBLE
    if b == STRING:
        return None
    return STRING if b == VOID else b


def _wider_two(a: SqlType, b: SqlType) -> SqlType | None:
    return _tightest_common(a, b) or _wider_for_decimal(a, b) or _wider_for_string(a, b)


def _wider_common(types: Sequence[SqlType], *, promote_strings: bool = True) -> SqlType | None:
    result: SqlType | None = VOID
    for t in types:
        if result is None:
            return None
        if promote_strings:
            result = _wider_two(result, t)
        else:
            result = _tightest_common(result, t) or _wider_for_decimal(result, t)
    return result


# What a function argument accepts, as in Spark's ImplicitCastInputTypes: a concrete type, any numeric type,
# or a collection tried in order.
_ANY_NUMERIC = "numeric"
Expected: TypeAlias = "str | tuple[str, ...]"


def _accepts(expected: Expected, t: SqlType) -> bool:
    if isinstance(expected, tuple):
        return any(_accepts(e, t) for e in expected)
    if expected == _ANY_NUMERIC:
        return _is_numeric(t)
    if expected == "decimal":
        return isinstance(t, _Decimal)
    return t == expected


def _default_type(expected: str) -> SqlType:
    defaults: dict[str, SqlType] = {_ANY_NUMERIC: DOUBLE, "decimal": _Decimal(10, 0)}
    return defaults.get(expected, expected)


def _implicit_target(t: SqlType, expected: Expected) -> SqlType | None:
    if _accepts(expected, t):
        return t
    if isinstance(expected, tuple):
        return next((target for e in expected if (target := _implicit_target(t, e)) is not None), None)
    if t == STRING:
        return _default_type(expected)
    target = _default_type(expected)
    # Spark's store-assignment rule: numbers convert among themselves, anything atomic becomes a string.
    if t == VOID or (_is_numeric(t) and _is_numeric(target)) or target == STRING:
        return target
    return None


# ---------------------------------------------------------------------------------------------------------
# Parsing and the shape checks that need no types.

# Functions by the name written (sqlglot maps some names onto others, e.g. log10(x) onto log(10, x)).
_FUNCTIONS = frozenset(
    "abs lower lcase upper ucase length char_length character_length len concat substring substr trim ltrim "
    "rtrim floor ceil ceiling round greatest least sqrt pow power exp ln log mod coalesce nvl ifnull if cast "
    "try_cast".split()
)
_STRING_TYPES = (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR)
_CAST_TARGETS: dict[Any, str] = {
    exp.DataType.Type.BOOLEAN: BOOLEAN,
    exp.DataType.Type.INT: INT,
    exp.DataType.Type.BIGINT: LONG,
    exp.DataType.Type.FLOAT: FLOAT,
    exp.DataType.Type.DOUBLE: DOUBLE,
    exp.DataType.Type.BINARY: BYTES,
} | {t: STRING for t in _STRING_TYPES}


def _parse(text: str) -> exp.Expr:
    if not isinstance(text, str) or not text.strip():
        raise UnsupportedExpression("the expression is empty")
    source = _escape_doubled_quotes(text)
    try:
        tokens = sqlglot.tokenize(source, read="spark")
        tree = sqlglot.parse_one(source, read="spark")
    except SqlglotError as error:
        reason = str(error).splitlines()[0]
        raise UnsupportedExpression(f"cannot parse {text!r}: {reason}") from None
    for token, following in zip(tokens, tokens[1:]):
        called = following.token_type == TokenType.L_PAREN
        if called and token.token_type in (TokenType.VAR, TokenType.IDENTIFIER):
            if token.text.lower() not in _FUNCTIONS:
                raise UnsupportedExpression(f"function {token.text} is not supported in streamed rows")
    if tree is None:
        raise UnsupportedExpression(f"cannot parse {text!r}")
    return tree


def _escape_doubled_quotes(text: str) -> str:
    """Spark reads `'it''s'` as one literal (a doubled quote stands for the quote); sqlglot reads two adjacent
    literals, which Spark would join as `its`. Rewrite the doubled quote as a backslash escape."""
    out: list[str] = []
    quote: str | None = None
    position = 0
    while position < len(text):
        char = text[position]
        if quote is None:
            if char in "'\"`":
                quote = char
            elif text.startswith("--", position):
                end = text.find("\n", position)
                end = len(text) if end < 0 else end
                out.append(text[position:end])
                position = end
                continue
            elif text.startswith("/*", position):
                end = text.find("*/", position + 2)
                end = len(text) if end < 0 else end + 2
                out.append(text[position:end])
                position = end
                continue
        elif char == "\\" and quote != "`":
            out.append(text[position : position + 2])
            position += 2
            continue
        elif char == quote:
            if text.startswith(quote * 2, position) and quote != "`":
                out.append("\\" + quote)
                position += 2
                continue
            if text.startswith(quote * 2, position):  # a doubled backtick is a backtick in the name
                out.append(quote * 2)
                position += 2
                continue
            quote = None
        out.append(char)
        position += 1
    return "".join(out)


def _unsupported(node: exp.Expr) -> UnsupportedExpression:
    if isinstance(node, exp.Func) and not isinstance(node, exp.Binary):
        name = node.name if isinstance(node, exp.Anonymous) else node.sql_name().lower()
        return UnsupportedExpression(f"function {name} is not supported in streamed rows")
    return UnsupportedExpression(f"{_sql(node)!r} is not supported in streamed rows")


def _sql(node: exp.Expr) -> str:
    return node.sql(dialect="spark")


def _missing(node: exp.Expr, *args: str) -> bool:
    return any(node.args.get(arg) is None for arg in args)


def _present(node: exp.Expr, *args: str) -> bool:
    return any(node.args.get(arg) not in (None, False, []) for arg in args)


def _shape_problem(node: exp.Expr) -> str | None:
    """What makes this node unsupported whatever the column types; None when its shape is fine."""
    kind = type(node)
    if kind is exp.Column and (node.args.get("table") is not None or not isinstance(node.this, exp.Identifier)):
        return f"column reference {_sql(node)!r} is not supported (write the bare column name)"
    if kind in (exp.Cast, exp.TryCast):
        if _present(node, "format"):
            return f"CAST ... FORMAT in {_sql(node)!r} is not supported"
        target = node.args["to"]
        if target.this not in _CAST_TARGETS and target.this != exp.DataType.Type.DECIMAL:
            return f"type {target.sql(dialect='spark')} in {_sql(node)!r} is not supported in streamed rows"
    if kind is exp.In and (_present(node, "query", "unnest", "field") or not node.expressions):
        return f"{_sql(node)!r} is not supported (only IN with a list of values)"
    if kind is exp.Between and _present(node, "symmetric"):
        return "BETWEEN SYMMETRIC is not supported"
    if kind is exp.Like and isinstance(node.expression, (exp.Any, exp.All)):
        return "LIKE ANY/ALL is not supported"
    if kind is exp.Escape and type(node.this) is not exp.Like:
        return f"ESCAPE in {_sql(node)!r} is only supported after LIKE"
    if kind is exp.Is and type(node.expression) is not exp.Null:
        return f"{_sql(node)!r} is not supported (only IS [NOT] NULL)"
    if kind is exp.Concat and _present(node, "coalesce"):
        return f"{_sql(node)!r} is not supported"
    if kind is exp.If and not isinstance(node.parent, exp.Case) and _missing(node, "true", "false"):
        return "IF needs three arguments: IF(condition, value, otherwise)"
    if kind in (exp.Ceil, exp.Floor) and _present(node, "decimals", "to"):
        return f"{_sql(node)!r}: {kind.__name__.lower()} with a scale is not supported (its result is a decimal)"
    if kind is exp.Round and _present(node, "truncate"):
        return f"{_sql(node)!r}: round takes at most two arguments"
    if kind is exp.Substring and _missing(node, "start"):
        return "substring needs a start position"
    if kind in (exp.Greatest, exp.Least) and not node.expressions:
        return f"{kind.__name__.lower()} needs at least two arguments"
    if kind not in _ANALYZERS and kind not in _PARTS:
        return str(_unsupported(node))
    return None


def _check_shape(node: exp.Expr) -> None:
    problem = _shape_problem(node)
    if problem is not None:
        raise UnsupportedExpression(problem)


# Nodes that only appear inside supported ones (a cast's target type, an IF branch of a CASE, ...).
_PARTS = (exp.Identifier, exp.DataType, exp.DataTypeParam, exp.Var)


# ---------------------------------------------------------------------------------------------------------
# The typed tree: what Spark's analyzer makes of the expression, implicit casts made explicit.


@dataclass(frozen=True, eq=False)
class _Node:
    kind: str
    type: SqlType
    args: tuple[_Node, ...] = ()
    param: Any = None

    @property
    def is_literal(self) -> bool:
        return self.kind == "literal"

    @property
    def is_null(self) -> bool:
        return self.kind == "literal" and self.param is None


def _literal(value: Any, t: SqlType) -> _Node:
    return _Node("literal", t, param=value)


def _cast(node: _Node, t: SqlType, *, try_: bool = False) -> _Node:
    if node.type == t:
        return node
    if node.is_null:
        return _literal(None, t)
    problem = _cast_problem(node.type, t)
    if problem is not None:
        raise UnsupportedExpression(problem)
    return _Node("cast", t, (node,), try_)


def _cast_problem(source: SqlType, target: SqlType) -> str | None:
    """Why a cast cannot run here: Spark refuses it (ANSI), or its result depends on the JVM."""
    if source == target or source == VOID:
        return None
    if source in _FLOATING and (target == STRING or isinstance(target, _Decimal)):
        return (
            f"casting {_name(source)} to {_name(target)} is not supported in streamed rows (Spark writes the "
            "number with Java's Double.toString, whose digits change between JVM versions); keep it numeric"
        )
    allowed = (
        target == STRING
        or (source == STRING and target != VOID)
        or (_is_numeric(source) and (_is_numeric(target) or target == BOOLEAN))
        or (source == BOOLEAN and _is_numeric(target))
    )
    if source == BYTES and target != STRING:
        allowed = False
    return None if allowed else f"cannot cast {_name(source)} to {_name(target)} (Spark refuses it)"


def _implicit(node: _Node, expected: Expected, where: str) -> _Node:
    target = _implicit_target(node.type, expected)
    if target is None:
        raise UnsupportedExpression(f"{where} does not take a {_name(node.type)} argument")
    return _cast(node, target)


_ARITHMETIC = ("add", "subtract", "multiply", "divide", "remainder", "int_divide")
_COMPARISONS = ("eq", "lt", "le", "gt", "ge", "null_safe_eq")
_SYMBOLS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "remainder": "%", "int_divide": "DIV"}
_SYMBOLS |= {"eq": "=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "null_safe_eq": "<=>"}
_SYMBOLS |= {"and": "AND", "or": "OR"}
# Integral expression against a decimal literal outside the long range: Spark answers the comparison from
# the literal alone, even for a null row. (op, literal on the right, literal below the long range) -> answer
_OUT_OF_RANGE_COMPARISONS = {
    ("gt", True, True): True,
    ("gt", True, False): False,
    ("ge", True, True): True,
    ("ge", True, False): False,
    ("lt", True, True): False,
    ("lt", True, False): True,
    ("le", True, True): False,
    ("le", True, False): True,
    ("gt", False, True): False,
    ("gt", False, False): True,
    ("ge", False, True): False,
    ("ge", False, False): True,
    ("lt", False, True): True,
    ("lt", False, False): False,
    ("le", False, True): True,
    ("le", False, False): False,
}


def _op_accepts(op: str, t: SqlType) -> bool:
    if op in ("add", "subtract", "multiply", "remainder"):
        return _is_numeric(t)
    if op == "divide":
        return t == DOUBLE or isinstance(t, _Decimal)
    if op == "int_divide":
        return t == LONG or isinstance(t, _Decimal)
    if op in ("and", "or"):
        return t == BOOLEAN
    return True


def _literal_decimal(node: _Node) -> _Decimal:
    digits = len(str(abs(node.param)))
    return _Decimal(digits, 0)


def _binary(op: str, left: _Node, right: _Node) -> _Node:
    """A binary operator with Spark's ANSI type coercion, in the order Spark's rules apply."""
    promoted = _wider_for_string(left.type, right.type)
    if promoted is not None:
        left, right = _cast(left, promoted), _cast(right, promoted)
    if op in _COMPARISONS[1:5]:
        for literal_right, (column, literal) in ((True, (left, right)), (False, (right, left))):
            if column.type in _INTEGRAL and literal.is_literal and isinstance(literal.type, _Decimal):
                if literal.param is not None and not LONG_RANGE[0] <= literal.param <= LONG_RANGE[1]:
                    below = literal.param < LONG_RANGE[0]
                    return _literal(_OUT_OF_RANGE_COMPARISONS[(op, literal_right, below)], BOOLEAN)
    if _either_decimal(left, right):
        left, right = _decimal_operands(left, right)
        if op in _COMPARISONS and isinstance(left.type, _Decimal) and isinstance(right.type, _Decimal):
            wider = _wider_decimal(left.type, right.type)
            left, right = _cast(left, wider), _cast(right, wider)
    if op == "divide" and not (left.type == right.type == DOUBLE or isinstance(left.type, _Decimal)):
        if all(_is_numeric(n.type) or n.type == VOID for n in (left, right)):
            left, right = _cast(left, DOUBLE), _cast(right, DOUBLE)
    if op == "int_divide":
        left, right = (_cast(n, LONG) if n.type == INT else n for n in (left, right))
    if left.type != right.type and (not _either_decimal(left, right) or VOID in (left.type, right.type)):
        common = _tightest_common(left.type, right.type)
        if common is not None and _op_accepts(op, common):
            left, right = _cast(left, common), _cast(right, common)
    if op not in _COMPARISONS:
        default = {"int_divide": LONG, "and": BOOLEAN, "or": BOOLEAN}.get(op, DOUBLE)
        left, right = (_cast(n, default) if n.type == VOID else n for n in (left, right))
    both_decimal = isinstance(left.type, _Decimal) and isinstance(right.type, _Decimal)
    same = left.type == right.type or (both_decimal and op in _ARITHMETIC)
    if not same or not _op_accepts(op, left.type):
        raise UnsupportedExpression(
            f"{_SYMBOLS[op]} cannot be applied to {_name(left.type)} and {_name(right.type)} (Spark refuses it)"
        )
    return _Node(op, _binary_result(op, left.type, right.type), (left, right))


def _either_decimal(left: _Node, right: _Node) -> bool:
    return isinstance(left.type, _Decimal) or isinstance(right.type, _Decimal)


def _decimal_operands(left: _Node, right: _Node) -> tuple[_Node, _Node]:
    """One decimal operand: an integer literal becomes the narrowest decimal holding it, any other integer
    the decimal of its type, a float or double makes both double."""
    if left.type == right.type or (isinstance(left.type, _Decimal) and isinstance(right.type, _Decimal)):
        return left, right
    if left.is_literal and left.type in _INTEGRAL and left.param is not None:
        return _cast(left, _literal_decimal(left)), right
    if right.is_literal and right.type in _INTEGRAL and right.param is not None:
        return left, _cast(right, _literal_decimal(right))
    if left.type in _INTEGRAL:
        return _cast(left, _decimal_for(left.type)), right
    if right.type in _INTEGRAL:
        return left, _cast(right, _decimal_for(right.type))
    if left.type in _FLOATING:
        return left, _cast(right, DOUBLE)
    if right.type in _FLOATING:
        return _cast(left, DOUBLE), right
    return left, right


def _binary_result(op: str, a: SqlType, b: SqlType) -> SqlType:
    if op in _COMPARISONS or op in ("and", "or"):
        return BOOLEAN
    if op == "int_divide":
        return LONG
    if not (isinstance(a, _Decimal) and isinstance(b, _Decimal)):
        return a
    p1, s1, p2, s2 = a.precision, a.scale, b.precision, b.scale
    if op in ("add", "subtract"):
        scale = max(s1, s2)
        return _adjusted(max(p1 - s1, p2 - s2) + scale + 1, scale)
    if op == "multiply":
        return _adjusted(p1 + p2 + 1, s1 + s2)
    if op == "divide":
        scale = max(_MIN_ADJUSTED_SCALE, s1 + p2 + 1)
        return _adjusted(p1 - s1 + s2 + scale, scale)
    return _adjusted(min(p1 - s1, p2 - s2) + max(s1, s2), max(s1, s2))  # remainder


def _number_literal(text: str) -> _Node:
    """A number as Spark's parser types it: an exponent makes a double, a point a decimal, digits alone an
    int, a bigint or a decimal by size."""
    if "e" in text.lower():
        value = float(text)
        if math.isinf(value):
            raise UnsupportedExpression(f"the literal {text} is out of the double range")
        return _literal(value, DOUBLE)
    number = Decimal(text)
    if "." not in text:
        whole = int(number)
        if INT_RANGE[0] <= whole <= INT_RANGE[1]:
            return _literal(whole, INT)
        if LONG_RANGE[0] <= whole <= LONG_RANGE[1]:
            return _literal(whole, LONG)
    digits, exponent = len(number.as_tuple().digits), number.as_tuple().exponent
    assert isinstance(exponent, int)
    scale = max(-exponent, 0)
    precision = max(digits, scale)
    if precision > _MAX_PRECISION:
        raise UnsupportedExpression(f"the literal {text} has more than 38 digits")
    return _literal(_normal_zero(number), _Decimal(precision, scale))


class _Analyzer:
    """Turns a sqlglot tree into a typed tree; records the input columns it reads."""

    def __init__(self, input_types: Mapping[str, str]) -> None:
        self._columns: dict[str, list[tuple[str, str]]] = {}
        for name, type_name in input_types.items():
            if type_name not in TYPES:
                raise UnsupportedExpression(f"column {name!r} has type {type_name!r}, not one of {', '.join(TYPES)}")
            self._columns.setdefault(name.lower(), []).append((name, type_name))
        self.used: set[str] = set()

    def analyze(self, node: exp.Expr) -> _Node:
        _check_shape(node)
        return _ANALYZERS[type(node)](self, node)

    def column(self, node: exp.Column) -> _Node:
        matches = self._columns.get(node.name.lower(), [])
        if not matches:
            known = ", ".join(sorted(name for group in self._columns.values() for name, _ in group))
            raise UnsupportedExpression(f"unknown column {node.name!r} (columns: {known or 'none'})")
        if len(matches) > 1:
            raise UnsupportedExpression(f"column {node.name!r} is ambiguous: {', '.join(n for n, _ in matches)}")
        name, type_name = matches[0]
        self.used.add(name)
        return _Node("column", type_name, param=name)

    def literal(self, node: exp.Literal) -> _Node:
        return _literal(node.this, STRING) if node.is_string else _number_literal(node.this)

    def negate(self, node: exp.Neg) -> _Node:
        inner = node.this
        # Spark's parser reads `-2147483648` (and `-9223372036854775808L`) as one literal.
        if type(inner) is exp.Literal and not inner.is_string:
            return _number_literal("-" + inner.this)
        if _is_typed_literal(inner):
            return self.typed_literal(inner, negative=True)
        return _unary_numeric("negate", self.analyze(inner))

    def typed_literal(self, node: exp.Expr, negative: bool = False) -> _Node:
        """`10L`, `1.5D`, `1.5F`, `1.5BD`: sqlglot writes them as casts of a literal; Spark reads one literal."""
        source: exp.Literal = node.this
        text = ("-" if negative else "") + source.this
        target = _cast_target(node.args["to"])
        if target in _FLOATING and not source.is_string:
            value = float(text) if target == DOUBLE else _float32_of(Fraction(Decimal(source.this)))
            return _literal(-value if negative and target == FLOAT else value, target)
        untyped = _literal(text, STRING) if source.is_string else _number_literal(text)
        typed = _cast(untyped, target)
        if typed.is_literal:
            return typed
        try:
            return _literal(_emit(typed)({}), target)
        except EvaluationError:
            return typed  # e.g. CAST(2147483648 AS INT): the optimizer decides where it fails

    def cast(self, node: exp.Cast) -> _Node:
        if _is_typed_literal(node):
            return self.typed_literal(node)
        child = self.analyze(node.this)
        target = _cast_target(node.args["to"])
        try_ = bool(node.args.get("safe"))
        if child.type == target:
            return child
        return _cast(child, target, try_=try_)

    def not_equal(self, node: exp.NEQ) -> _Node:
        return _not(_binary("eq", self.analyze(node.this), self.analyze(node.expression)))

    def distinct_from(self, node: exp.NullSafeNEQ) -> _Node:
        return _not(_binary("null_safe_eq", self.analyze(node.this), self.analyze(node.expression)))

    def negation(self, node: exp.Not) -> _Node:
        return _not(self.analyze(node.this))

    def is_null(self, node: exp.Is) -> _Node:
        return _Node("is_null", BOOLEAN, (self.analyze(node.this),))

    def between(self, node: exp.Between) -> _Node:
        value = self.analyze(node.this)
        low, high = self.analyze(node.args["low"]), self.analyze(node.args["high"])
        return _binary("and", _binary("ge", value, low), _binary("le", value, high))

    def in_list(self, node: exp.In) -> _Node:
        items = [self.analyze(node.this)] + [self.analyze(item) for item in node.expressions]
        if len({n.type for n in items}) > 1:
            common = _wider_common([n.type for n in items])
            if common is None:
                names = ", ".join(_name(n.type) for n in items)
                raise UnsupportedExpression(f"IN needs values of one type, not {names} (Spark refuses it)")
            items = [_cast(n, common) for n in items]
        return _Node("in", BOOLEAN, tuple(items))

    def like(self, node: exp.Like, escape: str = "\\") -> _Node:
        text = _implicit(self.analyze(node.this), STRING, "LIKE")
        pattern = _implicit(self.analyze(node.expression), STRING, "LIKE")
        result = _Node("like", BOOLEAN, (text, pattern), escape)
        return _not(result) if node.args.get("negate") else result

    def escape(self, node: exp.Escape) -> _Node:
        char = node.expression
        if type(char) is not exp.Literal or not char.is_string or len(char.this) != 1:
            raise UnsupportedExpression(f"ESCAPE takes one character, not {_sql(char)}")
        return self.like(node.this, char.this)

    def case(self, node: exp.Case) -> _Node:
        operand = self.analyze(node.this) if node.this is not None else None
        conditions, values = [], []
        for branch in node.args["ifs"]:
            condition = self.analyze(branch.this)
            if operand is not None:
                condition = _binary("eq", operand, condition)
            if condition.type != BOOLEAN:
                raise UnsupportedExpression(f"CASE WHEN needs a boolean condition, not {_name(condition.type)}")
            conditions.append(condition)
            values.append(self.analyze(branch.args["true"]))
        default = node.args.get("default")
        otherwise = self.analyze(default) if default is not None else None
        result_type = _common_type([*values, *([otherwise] if otherwise else [])], "CASE")
        otherwise = _cast(otherwise, result_type) if otherwise is not None else _literal(None, result_type)
        args = [n for pair in zip(conditions, (_cast(v, result_type) for v in values)) for n in pair]
        return _Node("case", result_type, (*args, otherwise))

    def if_(self, node: exp.If) -> _Node:
        condition = self.analyze(node.this)
        if condition.type == VOID:
            condition = _cast(condition, BOOLEAN)
        if condition.type != BOOLEAN:
            raise UnsupportedExpression(f"IF needs a boolean condition, not {_name(condition.type)}")
        yes, no = self.analyze(node.args["true"]), self.analyze(node.args["false"])
        result_type = yes.type if yes.type == no.type else _wider_two(yes.type, no.type)
        if result_type is None:
            raise UnsupportedExpression(f"IF branches of {_name(yes.type)} and {_name(no.type)} have no common type")
        return _Node("case", result_type, (condition, _cast(yes, result_type), _cast(no, result_type)))

    def coalesce(self, node: exp.Coalesce) -> _Node:
        args = [self.analyze(node.this)] + [self.analyze(a) for a in node.expressions]
        result_type = _common_type(args, "COALESCE")
        return _Node("coalesce", result_type, tuple(_cast(a, result_type) for a in args))

    def extreme(self, kind: str) -> Callable[[exp.Func], _Node]:
        def analyze(node: exp.Func) -> _Node:
            args = [self.analyze(node.this)] + [self.analyze(a) for a in node.expressions]
            result_type = _common_type(args, kind, promote_strings=False)
            return _Node(kind, result_type, tuple(_cast(a, result_type) for a in args))

        return analyze

    def abs(self, node: exp.Abs) -> _Node:
        return _unary_numeric("abs", self.analyze(node.this))

    def string_function(self, kind: str) -> Callable[[exp.Func], _Node]:
        return lambda node: _Node(kind, STRING, (_implicit(self.analyze(node.this), STRING, kind),))

    def length(self, node: exp.Length) -> _Node:
        return _Node("length", INT, (_implicit(self.analyze(node.this), (STRING, BYTES), "length"),))

    def concat(self, node: exp.Concat) -> _Node:
        return self._concat([self.analyze(a) for a in node.expressions])

    def pipes(self, node: exp.DPipe) -> _Node:
        return self._concat([self.analyze(node.this), self.analyze(node.expression)])

    def _concat(self, args: list[_Node]) -> _Node:
        if args and all(a.type == BYTES for a in args):
            return _Node("concat", BYTES, tuple(args))
        return _Node("concat", STRING, tuple(_implicit(a, STRING, "concat") for a in args))

    def substring(self, node: exp.Substring) -> _Node:
        value = _implicit(self.analyze(node.this), (STRING, BYTES), "substring")
        start = _implicit(self.analyze(node.args["start"]), INT, "substring")
        length = node.args.get("length")
        size = _implicit(self.analyze(length), INT, "substring") if length is not None else _literal(INT_RANGE[1], INT)
        return _Node("substring", value.type, (value, start, size))

    def trim(self, node: exp.Trim) -> _Node:
        value = _implicit(self.analyze(node.this), STRING, "trim")
        chars = node.args.get("expression")
        args = (value,) if chars is None else (value, _implicit(self.analyze(chars), STRING, "trim"))
        return _Node("trim", STRING, args, (node.args.get("position") or "BOTH").upper())

    def rounding(self, kind: str) -> Callable[[exp.Func], _Node]:
        def analyze(node: exp.Func) -> _Node:
            value = _implicit(self.analyze(node.this), (DOUBLE, "decimal", LONG), kind)
            result: SqlType = LONG
            if isinstance(value.type, _Decimal):
                p, s = value.type.precision, value.type.scale
                result = value.type if s == 0 else _bounded(p - s + 1, 0)
            return _Node(kind, result, (value,))

        return analyze

    def round(self, node: exp.Round) -> _Node:
        value = _implicit(self.analyze(node.this), _ANY_NUMERIC, "round")
        decimals = node.args.get("decimals")
        scale = 0
        if decimals is not None:
            scale_node = _optimize(_implicit(self.analyze(decimals), INT, "round"))
            if not scale_node.is_literal or scale_node.param is None:
                raise UnsupportedExpression("round needs a constant, non-null scale")
            scale = scale_node.param
        result = value.type
        if isinstance(value.type, _Decimal):
            p, s = value.type.precision, value.type.scale
            integral_digits = p - s + 1
            if scale < 0:
                result = _Decimal(min(max(integral_digits, -scale + 1), _MAX_PRECISION), 0)
            else:
                result = _Decimal(min(integral_digits + min(s, scale), _MAX_PRECISION), min(s, scale))
        return _Node("round", result, (value,), scale)

    def math_function(self, kind: str) -> Callable[[exp.Func], _Node]:
        return lambda node: _Node(kind, DOUBLE, (_implicit(self.analyze(node.this), DOUBLE, kind),))

    def math_function2(self, kind: str) -> Callable[[exp.Binary], _Node]:
        def analyze(node: exp.Binary) -> _Node:
            args = (self.analyze(node.this), self.analyze(node.expression))
            return _Node(kind, DOUBLE, tuple(_implicit(a, DOUBLE, kind) for a in args))

        return analyze

    def boolean(self, node: exp.Boolean) -> _Node:
        return _literal(bool(node.this), BOOLEAN)

    def null(self, node: exp.Null) -> _Node:
        return _literal(None, VOID)

    def paren(self, node: exp.Paren) -> _Node:
        return self.analyze(node.this)


def _is_typed_literal(node: exp.Expr) -> bool:
    return (
        type(node) is exp.TryCast
        and not node.args.get("safe")
        and type(node.this) is exp.Literal
        and (not node.this.is_string or node.args["to"].this == exp.DataType.Type.DECIMAL)
        and node.args["to"].this in (*_CAST_TARGETS, exp.DataType.Type.DECIMAL)
        and _CAST_TARGETS.get(node.args["to"].this) != STRING
    )


def _cast_target(data_type: exp.DataType) -> SqlType:
    if data_type.this != exp.DataType.Type.DECIMAL:
        return _CAST_TARGETS[data_type.this]
    params = [int(p.this.this) for p in data_type.expressions]
    precision, scale = (params[0], params[1] if len(params) > 1 else 0) if params else (10, 0)
    if not 0 < precision <= _MAX_PRECISION or not 0 <= scale <= precision:
        raise UnsupportedExpression(f"{data_type.sql(dialect='spark')} is not a valid decimal type")
    return _Decimal(precision, scale)


def _not(node: _Node) -> _Node:
    if node.type == VOID or node.type == STRING:
        node = _cast(node, BOOLEAN)
    if node.type != BOOLEAN:
        raise UnsupportedExpression(f"NOT needs a boolean, not {_name(node.type)}")
    return _Node("not", BOOLEAN, (node,))


def _unary_numeric(kind: str, child: _Node) -> _Node:
    if child.type in (STRING, VOID):
        child = _cast(child, DOUBLE)
    if not _is_numeric(child.type):
        raise UnsupportedExpression(f"{'-' if kind == 'negate' else kind} needs a number, not {_name(child.type)}")
    return _Node(kind, child.type, (child,))


def _common_type(args: Sequence[_Node], what: str, *, promote_strings: bool = True) -> SqlType:
    types = [a.type for a in args]
    if len(set(types)) <= 1:
        return types[0] if types else VOID
    common = _wider_common(types, promote_strings=promote_strings)
    if common is None:
        raise UnsupportedExpression(f"{what} of {', '.join(_name(t) for t in types)} has no common type")
    return common


def _binary_analyzer(op: str) -> Callable[[_Analyzer, exp.Binary], _Node]:
    return lambda analyzer, node: _binary(op, analyzer.analyze(node.this), analyzer.analyze(node.expression))


def _analyzers() -> dict[type[exp.Expr], Callable[[_Analyzer, Any], _Node]]:
    binary = {
        exp.Add: "add",
        exp.Sub: "subtract",
        exp.Mul: "multiply",
        exp.Div: "divide",
        exp.Mod: "remainder",
        exp.IntDiv: "int_divide",
        exp.EQ: "eq",
        exp.LT: "lt",
        exp.LTE: "le",
        exp.GT: "gt",
        exp.GTE: "ge",
        exp.NullSafeEQ: "null_safe_eq",
        exp.And: "and",
        exp.Or: "or",
    }
    table: dict[type[exp.Expr], Callable[[_Analyzer, Any], _Node]] = {}
    for kind, op in binary.items():
        table[kind] = _binary_analyzer(op)
    table |= {
        exp.Column: _Analyzer.column,
        exp.Literal: _Analyzer.literal,
        exp.Boolean: _Analyzer.boolean,
        exp.Null: _Analyzer.null,
        exp.Paren: _Analyzer.paren,
        exp.Neg: _Analyzer.negate,
        exp.Cast: _Analyzer.cast,
        exp.TryCast: _Analyzer.cast,
        exp.NEQ: _Analyzer.not_equal,
        exp.NullSafeNEQ: _Analyzer.distinct_from,
        exp.Not: _Analyzer.negation,
        exp.Is: _Analyzer.is_null,
        exp.Between: _Analyzer.between,
        exp.In: _Analyzer.in_list,
        exp.Like: _Analyzer.like,
        exp.Escape: _Analyzer.escape,
        exp.Case: _Analyzer.case,
        exp.If: _Analyzer.if_,
        exp.Coalesce: _Analyzer.coalesce,
        exp.Abs: _Analyzer.abs,
        exp.Length: _Analyzer.length,
        exp.Concat: _Analyzer.concat,
        exp.DPipe: _Analyzer.pipes,
        exp.Substring: _Analyzer.substring,
        exp.Trim: _Analyzer.trim,
        exp.Round: _Analyzer.round,
        exp.Lower: lambda a, node: a.string_function("lower")(node),
        exp.Upper: lambda a, node: a.string_function("upper")(node),
        exp.Greatest: lambda a, node: a.extreme("greatest")(node),
        exp.Least: lambda a, node: a.extreme("least")(node),
        exp.Floor: lambda a, node: a.rounding("floor")(node),
        exp.Ceil: lambda a, node: a.rounding("ceil")(node),
        exp.Sqrt: lambda a, node: a.math_function("sqrt")(node),
        exp.Exp: lambda a, node: a.math_function("exp")(node),
        exp.Ln: lambda a, node: a.math_function("ln")(node),
        exp.Pow: lambda a, node: a.math_function2("pow")(node),
        exp.Log: lambda a, node: a.math_function2("log")(node),
    }
    return table


_ANALYZERS = _analyzers()


def _output_type(node: _Node, text: str) -> str:
    if isinstance(node.type, _Decimal):
        raise UnsupportedExpression(
            f"{text!r} is a {node.type}; streamed rows carry no decimals: write CAST({text} AS DOUBLE) "
            "(literals like 0.05 are decimals in Spark)"
        )
    if node.type == VOID:
        raise UnsupportedExpression(f"{text!r} is an untyped NULL; give it a type, e.g. CAST(NULL AS DOUBLE)")
    return node.type


# ---------------------------------------------------------------------------------------------------------
# Optimizer rewrites that change which rows raise: Spark makes them before running the query.

# Kinds whose result is null when any argument is null (Spark's NullIntolerant expressions).
_NULL_INTOLERANT = frozenset(
    (*_ARITHMETIC, *_COMPARISONS[:5], "negate", "abs", "not", "cast", "like", "lower", "upper", "length")
) | {"substring", "floor", "ceil", "sqrt", "exp", "ln", "pow", "log"}
# Kinds Spark declares nullable whatever their arguments (a division or rounding can give null elsewhere).
_ALWAYS_NULLABLE = frozenset(("divide", "remainder", "int_divide", "round", "sqrt", "exp", "ln", "log", "fail"))


def _nullable(node: _Node) -> bool:
    """Spark's `nullable`: the IS NULL of a never-null expression is false without evaluating it."""
    if node.kind == "literal":
        return node.param is None
    if node.kind == "column" or node.kind in _ALWAYS_NULLABLE or (node.kind == "cast" and node.param):
        return True
    if node.kind == "cast" and _cast_may_give_null(node.args[0].type, node.type):
        return True
    if node.kind in ("is_null", "null_safe_eq"):
        return False
    if node.kind in ("coalesce", "greatest", "least"):
        return all(map(_nullable, node.args))
    if node.kind == "case":
        *branches, otherwise = node.args
        return any(map(_nullable, branches[1::2])) or _nullable(otherwise)
    return any(map(_nullable, node.args))


def _cast_may_give_null(source: SqlType, target: SqlType) -> bool:
    """Spark's Cast.forceNullable: casts that give null outside ANSI mode count as nullable in it too."""
    if source == VOID or target == STRING or (source == STRING and target == BYTES):
        return False
    if source == STRING or (_is_fractional(source) and target in _INTEGRAL):
        return True
    if isinstance(target, _Decimal):
        held = _Decimal(1, 0) if source == BOOLEAN else source if isinstance(source, _Decimal) else None
        if source in _INTEGRAL:
            held = _decimal_for(source)
        wide = held is not None and target.precision - target.scale >= held.precision - held.scale
        return not (wide and held is not None and target.scale >= held.scale)
    return False


def _same(a: _Node, b: _Node) -> bool:
    return (
        a.kind == b.kind
        and a.type == b.type
        and repr(a.param) == repr(b.param)
        and len(a.args) == len(b.args)
        and all(map(_same, a.args, b.args))
    )


_CONDITIONAL = ("case", "coalesce")


def _optimize(node: _Node) -> _Node:
    """What Spark's optimizer makes of the typed tree, as far as it decides values and failing rows.

    Its first round propagates nulls, then folds constants top down: a constant that raises fails the query
    whatever the rows, unless it sits in a branch of CASE, IF or COALESCE; there Spark keeps it unfolded
    (simplifying only around literals) and it fails the rows that reach it. Later rounds simplify booleans
    and casts, reorder integer sums and products (a constant that overflows there fails the query too) and
    fold what has become constant."""
    node = _fold_constants(_propagate_nulls(node), conditional=False)
    failure = _failure(node)
    if failure is None:
        node = _rewrite(node)
        failure = _failure(node)
    return node if failure is None else _Node("fail", node.type, param=failure)


def _failure(node: _Node) -> str | None:
    if node.kind == "fail":
        return str(node.param)
    return next((f for f in map(_failure, node.args) if f is not None), None)


def _propagate_nulls(node: _Node) -> _Node:
    if not node.args:
        return node
    node = _Node(node.kind, node.type, tuple(_propagate_nulls(a) for a in node.args), node.param)
    propagated = _propagated(node)
    if propagated is not None:
        return propagated
    if node.kind == "in":
        # Spark turns `v IN (one constant)` into `v = constant`, so `v IN (NULL)` is null without reading v.
        items = node.args[1:]
        if all(item.is_literal for item in items) and len({repr(item.param) for item in items}) == 1:
            return _Node("eq", BOOLEAN, (node.args[0], items[0]))
    return node


def _null_by_null_argument(node: _Node) -> bool:
    if node.kind == "in":
        return node.args[0].is_null
    return node.kind in _NULL_INTOLERANT and any(a.is_null for a in node.args)


def _propagated(node: _Node) -> _Node | None:
    """Spark's NullPropagation on one node, when it applies."""
    if _null_by_null_argument(node):
        return _literal(None, node.type)
    if node.kind == "is_null" and not _nullable(node.args[0]):
        return _literal(False, BOOLEAN)
    return None


def _is_constant(node: _Node) -> bool:
    return node.kind != "column" and all(_is_constant(a) for a in node.args)


def _fold_constants(node: _Node, conditional: bool) -> _Node:
    if node.is_literal:
        return node
    if _is_constant(node):
        try:
            return _literal(_emit(node)({}), node.type)
        except EvaluationError as error:
            if not conditional:
                return _Node("fail", node.type, param=str(error))
            return _guarded(_simplify_around_literals(node))
    inner = conditional or node.kind in _CONDITIONAL
    return _Node(node.kind, node.type, tuple(_fold_constants(a, inner) for a in node.args), node.param)


def _guarded(node: _Node) -> _Node:
    """A constant Spark could not fold: evaluated on the rows that reach it, never folded again."""
    return node if node.is_literal else _Node("guarded", node.type, (node,))


def _simplify_around_literals(node: _Node) -> _Node:
    """The rewrites Spark still makes inside an unfoldable constant: null propagation, NOT/AND/OR of boolean
    literals, and CASE/IF branches decided by a literal condition."""
    if not node.args:
        return node
    node = _Node(node.kind, node.type, tuple(_simplify_around_literals(a) for a in node.args), node.param)
    propagated = _propagated(node)
    if propagated is not None:
        return propagated
    if node.kind == "not" and node.args[0].is_literal:
        return _literal(not node.args[0].param, BOOLEAN)
    if node.kind in ("and", "or"):
        return _simplify_boolean(node) or node
    if node.kind == "case":
        *branches, otherwise = node.args
        kept: list[_Node] = []
        for condition, value in zip(branches[::2], branches[1::2]):
            if condition.is_literal and condition.param is not True:
                continue  # never taken
            if condition.is_literal and not kept:
                return value
            kept += [condition, value]
        return _Node("case", node.type, (*kept, otherwise), node.param) if kept else otherwise
    return node


def _rewrite(node: _Node) -> _Node:
    if not node.args or node.kind == "guarded":
        return node
    node = _Node(node.kind, node.type, tuple(_rewrite(a) for a in node.args), node.param)
    propagated = _propagated(node)
    if propagated is not None:
        return propagated
    if node.kind == "case" and all(_same(value, node.args[-1]) for value in node.args[1:-1:2]):
        return node.args[-1]  # every branch gives the same: Spark skips the conditions
    if node.kind == "cast" and node.args[0].kind == "cast":
        inner = node.args[0]
        if _up_cast(inner.args[0].type, inner.type) and _up_cast(inner.type, node.type):
            # Spark drops the middle of two widening casts, even int -> float -> double.
            node = _Node("cast", node.type, inner.args, node.param)
    if node.kind in ("lower", "upper") and node.args[0].kind in ("lower", "upper"):
        # Spark keeps only the outer case conversion: lower(upper('ß')) is 'ß', not 'ss'.
        node = _Node(node.kind, node.type, node.args[0].args)
    if node.kind in ("and", "or"):
        simplified = _simplify_boolean(node)
        if simplified is not None:
            return simplified
    if node.kind in ("add", "multiply") and node.type in _INTEGRAL:
        node = _reorder_associative(node)
    if all(a.is_literal for a in node.args):
        try:
            return _literal(_emit(node)({}), node.type)
        except EvaluationError:
            return _guarded(node)
    return node


def _up_cast(source: SqlType, target: SqlType) -> bool:
    """Spark's Cast.canUpCast among numbers: to a wider decimal, from a decimal to a type that holds it,
    and along int < bigint < float < double (which Spark counts as widening although a float drops digits)."""
    if source == target:
        return True
    if isinstance(target, _Decimal) and (source in _INTEGRAL or isinstance(source, _Decimal)):
        wide = source if isinstance(source, _Decimal) else _decimal_for(source)
        return target.precision - target.scale >= wide.precision - wide.scale and target.scale >= wide.scale
    if isinstance(source, _Decimal) and target in _INTEGRAL:
        whole = _decimal_for(target)
        return source.scale == 0 and source.precision < whole.precision
    return source in _NUMERIC_ORDER and target in _NUMERIC_ORDER and _NUMERIC_ORDER[source] < _NUMERIC_ORDER[target]


def _simplify_boolean(node: _Node) -> _Node | None:
    absorbing = node.kind == "or"  # TRUE absorbs OR, FALSE absorbs AND
    for this, other in (node.args, node.args[::-1]):
        if this.is_literal and this.param is not None:
            return _literal(absorbing, BOOLEAN) if this.param is absorbing else other
    return None


def _reorder_associative(node: _Node) -> _Node:
    """`i + 1 + 2` runs as `i + 3` in Spark, which changes where an int overflows."""

    def flatten(n: _Node) -> Iterator[_Node]:
        if n.kind == node.kind and n.type == node.type:
            for arg in n.args:
                yield from flatten(arg)
        else:
            yield n

    operands = list(flatten(node))
    constants = [n for n in operands if n.is_literal]
    if len(constants) < 2:
        return node
    folded = constants[0]
    for constant in constants[1:]:
        folded = _Node(node.kind, node.type, (folded, constant))
    try:
        folded = _literal(_emit(folded)({}), node.type)
    except EvaluationError as error:
        # Spark folds these constants without guarding the error: the query fails wherever the sum sits.
        return _Node("fail", node.type, param=str(error))
    others = [n for n in operands if not n.is_literal]
    if not others:
        return folded
    result = others[0]
    for other in others[1:]:
        result = _Node(node.kind, node.type, (result, other))
    return _Node(node.kind, node.type, (result, folded))


# ---------------------------------------------------------------------------------------------------------
# Values: exact conversions between the Python forms of Spark's types.

_FLOAT32 = struct.Struct("<f")
_UINT32 = struct.Struct("<I")
_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT32_TINY = 1.401298464324817e-45
_DECIMALS = Context(prec=400, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999)
_PRODUCTS = Context(prec=_MAX_PRECISION, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999)
_SCALE_UNITS = [Decimal(1).scaleb(-s) for s in range(_MAX_PRECISION + 1)]


def _to_float32(value: float) -> float:
    """A double rounded to the nearest float (Java's `(float)`)."""
    try:
        return float(_FLOAT32.unpack(_FLOAT32.pack(value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def _float32_step(single: float, toward: float) -> float:
    if single == 0:
        return math.copysign(_FLOAT32_TINY, toward)
    bits = _UINT32.unpack(_FLOAT32.pack(single))[0]
    bits += 1 if (toward > single) == (single > 0) else -1
    return float(_FLOAT32.unpack(_UINT32.pack(bits))[0])


def _float32_of(value: Fraction) -> float:
    """The float nearest to an exact number, ties to even (Java's long-to-float, Float.parseFloat)."""
    try:
        double = float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    single = _to_float32(double)
    if single == double or math.isinf(double):
        return single
    if math.isinf(single):
        other, midpoint = math.copysign(_FLOAT32_MAX, double), math.copysign(2.0**128 - 2.0**103, double)
    else:
        other = _float32_step(single, double)
        midpoint = (single + other) / 2
    # Rounding twice (to double, then to float) errs only when the double is a tie between two floats.
    if double != midpoint or value == Fraction(midpoint):
        return single
    return single if (value > Fraction(midpoint)) == (single > midpoint) else other


def _normal_zero(value: Decimal) -> Decimal:
    return value.copy_abs() if value.is_zero() else value


def _fit(value: Decimal, t: _Decimal) -> Decimal:
    """A decimal as Spark stores it in decimal(p,s): rounded HALF_UP to s places; more than p digits fail."""
    try:
        rounded = value.quantize(_SCALE_UNITS[t.scale], context=_DECIMALS)
    except InvalidOperation:
        raise _out_of_range(value, t) from None
    if len(rounded.as_tuple().digits) > t.precision and not rounded.is_zero():
        raise _out_of_range(value, t)
    return _normal_zero(rounded)


def _out_of_range(value: Any, t: SqlType) -> EvaluationError:
    return EvaluationError(f"[NUMERIC_VALUE_OUT_OF_RANGE] {value} cannot be represented as {_name(t)}")


def _overflow(what: str) -> EvaluationError:
    return EvaluationError(f"[ARITHMETIC_OVERFLOW] {what} overflows")


def _invalid(text: str, t: SqlType) -> EvaluationError:
    return EvaluationError(f"[CAST_INVALID_INPUT] {text!r} cannot be cast to {_name(t)}")


def _cast_overflow(value: Any, t: SqlType) -> EvaluationError:
    return EvaluationError(f"[CAST_OVERFLOW] {value!r} does not fit in {_name(t)}")


# Spark trims these around a number (UTF8String.toInt: whitespace and ISO control characters) or a boolean.
_SPARK_TRIMMED = "".join(map(chr, range(0x21))) + "\x7f"
# Java's String.trim, used before parsing a double or a decimal: every character up to the space.
_JAVA_TRIMMED = "".join(map(chr, range(0x21)))
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
# Java's BigDecimal takes any Unicode decimal digit, as Python's \d does.
_JAVA_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_JAVA_FLOAT_TEXT = re.compile(
    r"(?P<sign>[+-]?)(?:(?P<special>NaN|Infinity)|(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[fFdD]?"
    r"|0[xX](?P<hex>[0-9a-fA-F]+\.?|[0-9a-fA-F]*\.[0-9a-fA-F]+)[pP](?P<power>[+-]?[0-9]+)[fFdD]?)"
)
_FLOAT_WORDS = {"inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf}
_FLOAT_WORDS |= {"-inf": -math.inf, "-infinity": -math.inf, "nan": math.nan}
_TRUE_TEXTS = frozenset(("t", "true", "y", "yes", "1"))
_FALSE_TEXTS = frozenset(("f", "false", "n", "no", "0"))


def _parse_integral(text: str, t: str) -> int:
    stripped = text.strip(_SPARK_TRIMMED)
    if not _INTEGER_TEXT.fullmatch(stripped):
        raise _invalid(text, t)
    value = int(stripped)
    low, high = INT_RANGE if t == INT else LONG_RANGE
    if not low <= value <= high:
        raise _invalid(text, t)
    return value


def _parse_floating(text: str, t: str) -> float:
    """Java's Double.parseDouble / Float.parseFloat, then the words Spark adds (inf, nan, ...)."""
    stripped = text.strip(_JAVA_TRIMMED)
    match = _JAVA_FLOAT_TEXT.fullmatch(stripped)
    if match is None:
        word = _FLOAT_WORDS.get(stripped.lower())
        if word is None:
            raise _invalid(text, t)
        return word
    negative = match["sign"] == "-"
    if match["special"]:
        return math.nan if match["special"] == "NaN" else (-math.inf if negative else math.inf)
    if match["number"] is not None:
        magnitude = Fraction(Decimal(match["number"]))
    else:
        whole, _, fraction = match["hex"].partition(".")
        mantissa = int(whole + fraction or "0", 16)
        magnitude = Fraction(mantissa) * Fraction(2) ** (int(match["power"]) - 4 * len(fraction))
    if t == DOUBLE:
        try:
            result = float(magnitude)
        except OverflowError:
            result = math.inf
    else:
        result = _float32_of(magnitude)
    return -result if negative else result


def _parse_decimal(text: str, t: _Decimal) -> Decimal:
    stripped = text.strip(_JAVA_TRIMMED)
    if not _JAVA_DECIMAL_TEXT.fullmatch(stripped):
        raise _invalid(text, t)
    return _fit(Decimal(stripped), t)


def _parse_boolean(text: str) -> bool:
    lowered = text.strip(_SPARK_TRIMMED).lower()
    if lowered in _TRUE_TEXTS:
        return True
    if lowered in _FALSE_TEXTS:
        return False
    raise _invalid(text, BOOLEAN)


def _fractional_to_integral(value: float, t: str) -> int:
    """Java's checked (int)/(long) of a double: NaN and out-of-range fail, the rest truncates (a long
    saturates at 2^63, which passes Spark's range check)."""
    low, high = INT_RANGE if t == INT else LONG_RANGE
    if math.isnan(value) or math.isinf(value) or not (math.floor(value) <= float(high) and math.ceil(value) >= low):
        raise _cast_overflow(value, t)
    return min(max(int(value), low), high)


def _check_range(value: int, t: str) -> int:
    low, high = INT_RANGE if t == INT else LONG_RANGE
    if not low <= value <= high:
        raise _cast_overflow(value, t)
    return value


def _format_decimal(value: Decimal) -> str:
    return format(value, "f")


_Converter: TypeAlias = Callable[[Any], Any]


def _converter(source: SqlType, target: SqlType) -> _Converter:
    """The function Spark's ANSI cast applies to one non-null value."""
    if source == VOID:
        return lambda v: v  # a NULL's type: there is never a value to convert
    if isinstance(target, _Decimal):
        if isinstance(source, _Decimal) or source in _INTEGRAL:
            return lambda v: _fit(Decimal(v), target)
        if source == BOOLEAN:
            return lambda v: _fit(Decimal(int(v)), target)
        return lambda v: _parse_decimal(v, target)  # string
    if isinstance(source, _Decimal):
        return {
            INT: lambda v: _check_range(int(v), INT),
            LONG: lambda v: _check_range(int(v), LONG),
            FLOAT: lambda v: _float32_of(Fraction(v)),
            DOUBLE: float,
            BOOLEAN: lambda v: not v.is_zero(),
            STRING: _format_decimal,
        }[target]
    converters: dict[tuple[SqlType, SqlType], _Converter] = {
        (INT, LONG): int,
        (LONG, INT): lambda v: _check_range(v, INT),
        (FLOAT, DOUBLE): float,
        (DOUBLE, FLOAT): _to_float32,
        (BOOLEAN, STRING): lambda v: "true" if v else "false",
        (BYTES, STRING): lambda v: bytes(v).decode("utf-8", "replace"),
        (STRING, BYTES): lambda v: v.encode("utf-8"),
        (STRING, BOOLEAN): _parse_boolean,
    }
    for t in _INTEGRAL:
        converters[(t, FLOAT)] = lambda v: float(v) if abs(v) <= 1 << 24 else _float32_of(Fraction(v))
        converters[(t, DOUBLE)] = float
        converters[(t, BOOLEAN)] = bool
        converters[(t, STRING)] = str
        converters[(BOOLEAN, t)] = int
        converters[(STRING, t)] = partial(_parse_integral, t=t)
        for f in _FLOATING:
            converters[(f, t)] = partial(_fractional_to_integral, t=t)
    for f in _FLOATING:
        converters[(f, BOOLEAN)] = bool
        converters[(BOOLEAN, f)] = float
        converters[(STRING, f)] = partial(_parse_floating, t=f)
    return converters[(source, target)]


# ---------------------------------------------------------------------------------------------------------
# Operations on non-null values, by type.


def _double_compare(a: float, b: float) -> int:
    """Spark's order of doubles: NaN equals NaN and is greater than everything; -0.0 equals 0.0."""
    if a < b:
        return -1
    if a > b:
        return 1
    if a == b:
        return 0
    return (0 if b != b else 1) if a != a else -1


def _comparison(op: str, t: SqlType) -> Callable[[Any, Any], bool]:
    if t in _FLOATING:
        if op in ("eq", "null_safe_eq"):
            return lambda a, b: a == b or (a != a and b != b)
        test = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}[op]
        return lambda a, b: test(_double_compare(a, b), 0)
    return {
        "eq": operator.eq,
        "null_safe_eq": operator.eq,
        "lt": operator.lt,
        "le": operator.le,
        "gt": operator.gt,
        "ge": operator.ge,
    }[op]


def _checked(t: str, what: str, op: Callable[[int, int], int]) -> Callable[[int, int], int]:
    low, high = INT_RANGE if t == INT else LONG_RANGE

    def run(a: int, b: int) -> int:
        result = op(a, b)
        if not low <= result <= high:
            raise _overflow(f"{_name(t)} {what}")
        return result

    return run


def _truncated_remainder(a: int, b: int) -> int:
    result = abs(a) % abs(b)
    return -result if a < 0 else result


def _truncated_quotient(a: int, b: int) -> int:
    result = abs(a) // abs(b)
    return -result if (a < 0) != (b < 0) else result


def _double_remainder(a: float, b: float) -> float:
    if math.isinf(a) or math.isnan(a) or math.isnan(b):
        return math.nan
    return math.fmod(a, b)


def _decimal_quotient(a: Decimal, b: Decimal) -> Decimal:
    """Java's BigDecimal.divide(b, 38, HALF_UP): the quotient rounded to 38 places."""
    exact = Fraction(a) / Fraction(b) * 10**_MAX_PRECISION
    whole, rest = divmod(abs(exact.numerator), exact.denominator)
    if 2 * rest >= exact.denominator:
        whole += 1
    return Decimal(-whole if exact < 0 else whole).scaleb(-_MAX_PRECISION, context=_DECIMALS)


def _wrap_long(value: int) -> int:
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


def _arithmetic(kind: str, a_type: SqlType, b_type: SqlType, result: SqlType) -> Callable[[Any, Any], Any]:
    if isinstance(a_type, _Decimal):
        if kind == "int_divide":
            return lambda a, b: _wrap_long(int(_DECIMALS.divide_int(a, b)))
        assert isinstance(result, _Decimal)
        exact = {
            "add": _DECIMALS.add,
            "subtract": _DECIMALS.subtract,
            "multiply": _PRODUCTS.multiply,
            "divide": _decimal_quotient,
            "remainder": _DECIMALS.remainder,
        }[kind]
        return lambda a, b: _fit(exact(a, b), result)
    if a_type in _INTEGRAL:
        assert isinstance(a_type, str)
        if kind == "remainder":
            return _truncated_remainder
        if kind == "int_divide":
            return _checked(LONG, "division", _truncated_quotient)
        return _checked(a_type, kind, {"add": operator.add, "subtract": operator.sub, "multiply": operator.mul}[kind])
    operations: dict[str, Callable[[float, float], float]] = {
        "add": operator.add,
        "subtract": operator.sub,
        "multiply": operator.mul,
        "divide": operator.truediv,
        "remainder": _double_remainder,
    }
    operation = operations[kind]
    if a_type == FLOAT:
        return lambda a, b: _to_float32(operation(a, b))
    return operation


def _negate(t: SqlType) -> Callable[[Any], Any]:
    if isinstance(t, _Decimal):
        return lambda v: _normal_zero(_DECIMALS.minus(v))
    if t in _INTEGRAL:
        low = INT_RANGE[0] if t == INT else LONG_RANGE[0]

        def run(v: int) -> int:
            if v == low:
                raise _overflow(f"{_name(t)} negation")
            return -v

        return run
    return operator.neg


def _absolute(t: SqlType) -> Callable[[Any], Any]:
    if isinstance(t, _Decimal):
        return lambda v: _DECIMALS.abs(v)
    if t in _INTEGRAL:
        negate = _negate(t)
        return lambda v: negate(v) if v < 0 else v
    return abs


def _round_half_up_integer(value: int, scale: int, t: str) -> int:
    if scale >= 0:
        return value
    unit = 10**-scale
    rounded = (abs(value) + unit // 2) // unit * unit
    low, high = INT_RANGE if t == INT else LONG_RANGE
    if not low <= rounded <= high or not low <= -rounded <= high:
        raise _overflow(f"{_name(t)} rounding")
    return -rounded if value < 0 else rounded


def _round_double_text(value: float, scale: int) -> Decimal:
    """Spark rounds the decimal text of a double (Scala's BigDecimal(d)), not its binary value."""
    if scale < -400:
        return Decimal(0)
    text = Decimal(repr(value))
    exponent = text.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -scale:
        text = text.quantize(Decimal((0, (1,), -scale)), rounding=ROUND_HALF_UP, context=_DECIMALS)
    return text


def _rounder(t: SqlType, scale: int, result: SqlType) -> Callable[[Any], Any]:
    if isinstance(t, _Decimal):
        assert isinstance(result, _Decimal)
        unit = Decimal((0, (1,), -scale))
        return lambda v: _fit(v.quantize(unit, rounding=ROUND_HALF_UP, context=_DECIMALS), result)
    if t in _INTEGRAL:
        assert isinstance(t, str)
        return lambda v: _round_half_up_integer(v, scale, t)

    def run(v: float) -> float:
        if math.isnan(v) or math.isinf(v):
            return v
        rounded = _round_double_text(v, scale)
        if rounded.is_zero():
            return 0.0
        return _float32_of(Fraction(rounded)) if t == FLOAT else float(rounded)

    return run


def _floor_or_ceil(kind: str, t: SqlType, result: SqlType) -> Callable[[Any], Any]:
    if isinstance(t, _Decimal):
        assert isinstance(result, _Decimal)
        mode = ROUND_FLOOR if kind == "floor" else ROUND_CEILING
        return lambda v: _fit(v.quantize(_SCALE_UNITS[0], rounding=mode, context=_DECIMALS), result)
    if t == LONG:
        return lambda v: v
    to_integer = math.floor if kind == "floor" else math.ceil

    def run(v: float) -> int:
        if math.isnan(v):
            return 0  # Java's (long) NaN
        if math.isinf(v):
            raise _overflow(kind)
        whole = to_integer(v)
        if not -(1 << 63) <= whole < (1 << 63):
            raise _overflow(kind)
        return whole

    return run


def _substring(value: Any, position: int, length: int) -> Any:
    """Spark's 1-based substring: 0 means 1, a negative position counts from the end."""
    size = len(value)
    start = position - 1 if position > 0 else (size + position if position < 0 else 0)
    end = start + length
    start = max(start, 0)
    return value[start:end] if start < end else value[:0]


@lru_cache(maxsize=256)
def _like_pattern(pattern: str, escape: str) -> re.Pattern[str]:
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == escape:
            following = next(chars, None)
            if following is None:
                raise EvaluationError(f"[INVALID_FORMAT.ESC_AT_THE_END] LIKE pattern {pattern!r} ends with the escape")
            if following not in ("_", "%", escape):
                raise EvaluationError(
                    f"[INVALID_FORMAT.ESC_IN_THE_MIDDLE] in LIKE pattern {pattern!r} the escape precedes {following!r}"
                )
            parts.append(re.escape(following))
        elif char == "_":
            parts.append(".")
        elif char == "%":
            parts.append(".*")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


# ---------------------------------------------------------------------------------------------------------
# Closures: one emitter per kind of node; each gets the node and its children's evaluators.

_Emitter: TypeAlias = Callable[[_Node, list[Evaluator]], Evaluator]


def _emit(node: _Node) -> Evaluator:
    if node.kind == "literal":
        value = node.param
        return lambda row: value
    return _EMITTERS[node.kind](node, [_emit(arg) for arg in node.args])


def _strict1(operation: Callable[[Any], Any], child: Evaluator) -> Evaluator:
    def run(row: Row) -> Any:
        value = child(row)
        return None if value is None else operation(value)

    return run


def _strict2(operation: Callable[[Any, Any], Any], left: Evaluator, right: Evaluator) -> Evaluator:
    def run(row: Row) -> Any:
        a = left(row)
        if a is None:
            return None
        b = right(row)
        if b is None:
            return None
        return operation(a, b)

    return run


def _emit_column(node: _Node, _: list[Evaluator]) -> Evaluator:
    name = node.param
    if node.type == FLOAT:
        # A decoder may hand over a double; Spark holds a float column's values as 32-bit floats.
        return lambda row: None if (value := row.get(name)) is None else _to_float32(value)
    return lambda row: row.get(name)


def _emit_cast(node: _Node, children: list[Evaluator]) -> Evaluator:
    convert = _converter(node.args[0].type, node.type)
    if node.param:  # TRY_CAST: null where CAST fails

        def attempt(value: Any) -> Any:
            try:
                return convert(value)
            except EvaluationError:
                return None

        return _strict1(attempt, children[0])
    return _strict1(convert, children[0])


def _emit_arithmetic(node: _Node, children: list[Evaluator]) -> Evaluator:
    left, right = node.args
    operation = _arithmetic(node.kind, left.type, right.type, node.type)
    if node.kind not in ("divide", "remainder", "int_divide"):
        return _strict2(operation, *children)
    dividend, divisor = children
    error = "[REMAINDER_BY_ZERO] remainder by zero" if node.kind == "remainder" else "[DIVIDE_BY_ZERO] division by zero"

    # Spark reads the divisor first (a failing divisor fails even when the dividend is null), then the
    # dividend; only a division of two non-null values checks for zero.
    def divide(row: Row) -> Any:
        b = divisor(row)
        if b is None:
            return None
        a = dividend(row)
        if a is None:
            return None
        if b == 0:
            raise EvaluationError(error)
        return operation(a, b)

    return divide


def _emit_comparison(node: _Node, children: list[Evaluator]) -> Evaluator:
    compare = _comparison(node.kind, node.args[0].type)
    if node.kind != "null_safe_eq":
        return _strict2(compare, *children)
    left, right = children

    def null_safe(row: Row) -> bool:
        a, b = left(row), right(row)
        if a is None or b is None:
            return a is None and b is None
        return compare(a, b)

    return null_safe


def _emit_and(node: _Node, children: list[Evaluator]) -> Evaluator:
    left, right = children

    def run(row: Row) -> bool | None:
        a = left(row)
        if a is False:
            return False
        b = right(row)
        if b is False:
            return False
        return None if a is None or b is None else True

    return run


def _emit_or(node: _Node, children: list[Evaluator]) -> Evaluator:
    left, right = children

    def run(row: Row) -> bool | None:
        a = left(row)
        if a is True:
            return True
        b = right(row)
        if b is True:
            return True
        return None if a is None or b is None else False

    return run


def _emit_in(node: _Node, children: list[Evaluator]) -> Evaluator:
    value, *items = children
    equal = _comparison("eq", node.args[0].type)
    constants = [n.param for n in node.args[1:]] if all(n.is_literal for n in node.args[1:]) else None
    if constants is not None and node.args[0].type not in _FLOATING:
        members = frozenset(c for c in constants if c is not None)
        any_null = None in constants

        def member(row: Row) -> bool | None:
            v = value(row)
            if v is None:
                return None
            return True if v in members else (None if any_null else False)

        return member

    def scan(row: Row) -> bool | None:
        v = value(row)
        if v is None:
            return None
        any_null = False
        for item in items:
            candidate = item(row)
            if candidate is None:
                any_null = True
            elif equal(v, candidate):
                return True
        return None if any_null else False

    return scan


def _emit_like(node: _Node, children: list[Evaluator]) -> Evaluator:
    escape = node.param
    pattern_node = node.args[1]
    if pattern_node.is_literal:
        try:
            compiled = _like_pattern(pattern_node.param, escape)
        except EvaluationError as error:
            failure = error

            def fail(_: str) -> bool:
                raise failure

            return _strict1(fail, children[0])
        return _strict1(lambda text: compiled.fullmatch(text) is not None, children[0])
    return _strict2(lambda text, pattern: _like_pattern(pattern, escape).fullmatch(text) is not None, *children)


def _emit_case(node: _Node, children: list[Evaluator]) -> Evaluator:
    *branches, otherwise = children
    pairs = list(zip(branches[::2], branches[1::2]))

    def run(row: Row) -> Any:
        for condition, value in pairs:
            if condition(row) is True:
                return value(row)
        return otherwise(row)

    return run


def _emit_coalesce(node: _Node, children: list[Evaluator]) -> Evaluator:
    def run(row: Row) -> Any:
        for child in children:
            value = child(row)
            if value is not None:
                return value
        return None

    return run


def _emit_extreme(node: _Node, children: list[Evaluator]) -> Evaluator:
    better = _comparison("gt" if node.kind == "greatest" else "lt", node.type)

    def run(row: Row) -> Any:
        best = None
        for child in children:
            value = child(row)
            if value is not None and (best is None or better(value, best)):
                best = value
        return best

    return run


def _emit_concat(node: _Node, children: list[Evaluator]) -> Evaluator:
    empty = b"" if node.type == BYTES else ""

    def run(row: Row) -> Any:
        parts = []
        for child in children:
            value = child(row)
            if value is None:
                return None
            parts.append(value)
        return empty.join(parts)

    return run


def _emit_substring(node: _Node, children: list[Evaluator]) -> Evaluator:
    value, position, length = children

    def run(row: Row) -> Any:
        v = value(row)
        if v is None:
            return None
        p = position(row)
        if p is None:
            return None
        n = length(row)
        return None if n is None else _substring(v, p, n)

    return run


def _emit_trim(node: _Node, children: list[Evaluator]) -> Evaluator:
    strip = {"BOTH": str.strip, "LEADING": str.lstrip, "TRAILING": str.rstrip}[node.param]
    if len(children) == 1:
        return _strict1(lambda v: strip(v, " "), children[0])
    return _strict2(strip, *children)


def _emit_not(node: _Node, children: list[Evaluator]) -> Evaluator:
    return _strict1(operator.not_, children[0])


def _emit_is_null(node: _Node, children: list[Evaluator]) -> Evaluator:
    child = children[0]
    return lambda row: child(row) is None


def _emit_fail(node: _Node, _: list[Evaluator]) -> Evaluator:
    message = node.param

    def run(row: Row) -> Any:
        raise EvaluationError(message)

    return run


def _ln(value: float) -> float | None:
    return None if value <= 0 else strict_log(value)


def _log(base: float, value: float) -> float | None:
    if base <= 0 or value <= 0:
        return None
    return java_divide(strict_log(value), strict_log(base))


def _sqrt(value: float) -> float:
    return math.nan if value < 0 else math.sqrt(value)


def _unary(operation: Callable[[_Node], Callable[[Any], Any]]) -> _Emitter:
    return lambda node, children: _strict1(operation(node), children[0])


_EMITTERS: dict[str, _Emitter] = {
    "column": _emit_column,
    "cast": _emit_cast,
    **{kind: _emit_arithmetic for kind in _ARITHMETIC},
    **{kind: _emit_comparison for kind in _COMPARISONS},
    "and": _emit_and,
    "or": _emit_or,
    "not": _emit_not,
    "is_null": _emit_is_null,
    "in": _emit_in,
    "like": _emit_like,
    "case": _emit_case,
    "coalesce": _emit_coalesce,
    "greatest": _emit_extreme,
    "least": _emit_extreme,
    "concat": _emit_concat,
    "substring": _emit_substring,
    "trim": _emit_trim,
    "fail": _emit_fail,
    "guarded": lambda node, children: children[0],
    "negate": _unary(lambda node: _negate(node.type)),
    "abs": _unary(lambda node: _absolute(node.type)),
    "lower": _unary(lambda node: str.lower),
    "upper": _unary(lambda node: str.upper),
    "length": _unary(lambda node: len),
    "round": _unary(lambda node: _rounder(node.args[0].type, node.param, node.type)),
    "floor": _unary(lambda node: _floor_or_ceil("floor", node.args[0].type, node.type)),
    "ceil": _unary(lambda node: _floor_or_ceil("ceil", node.args[0].type, node.type)),
    "sqrt": _unary(lambda node: _sqrt),
    "exp": _unary(lambda node: strict_exp),
    "ln": _unary(lambda node: _ln),
    "pow": lambda node, children: _strict2(strict_pow, *children),
    "log": lambda node, children: _strict2(_log, *children),
}
