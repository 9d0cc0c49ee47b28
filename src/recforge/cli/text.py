"""Hyper-parameter types and docstrings rendered for the terminal (LaTeX math as plain text)."""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Annotated, Any, Literal

_LIMITS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "length >="))


def _limits(metadata: Any) -> list[str]:
    found = []
    for m in metadata:
        for item in (m, *getattr(m, "metadata", ())):
            found += [f"{op} {getattr(item, a)}" for a, op in _LIMITS if getattr(item, a, None) is not None]
    return found


def describe_annotation(annotation: Any) -> str:
    """A hyper-parameter's type as a user writes it: ``float (> 0)``, ``one of 'adam', 'sgd'``, ``int | None``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        base, *metadata = args
        limits = _limits(metadata)
        return describe_annotation(base) + (f" ({', '.join(limits)})" if limits else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else describe_annotation(a) for a in args)
    if origin in (tuple, list, dict, set, frozenset):
        inner = ", ".join("..." if a is Ellipsis else describe_annotation(a) for a in args)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    return getattr(annotation, "__name__", str(annotation))


# -- docstrings without reStructuredText and LaTeX noise
_GREEK_AND_SYMBOLS = {
    **dict.fromkeys(("left", "right", "bigl", "bigr", "Bigl", "Bigr", "big", "Big", "displaystyle"), ""),
    **{",": " ", ";": " ", ":": " ", " ": " ", "!": "", "quad": "  ", "qquad": "    "},
    **{"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "eta": "η"},
    **{"theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "pi": "π", "rho": "ρ", "sigma": "σ"},
    **{"tau": "τ", "phi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω", "Sigma": "Σ", "Lambda": "Λ", "Phi": "Φ"},
    **{"Gamma": "Γ", "Delta": "Δ", "Omega": "Ω", "sum": "Σ", "prod": "Π", "odot": "⊙", "otimes": "⊗"},
    **{"oplus": "⊕", "cdot": "·", "times": "×", "pm": "±", "ne": "≠", "neq": "≠", "le": "≤", "leq": "≤"},
    **{"ge": "≥", "geq": "≥", "approx": "≈", "sim": "~", "in": "∈", "notin": "∉", "mid": "|", "Vert": "‖"},
    **{"lVert": "‖", "rVert": "‖", "vert": "|", "lvert": "|", "rvert": "|", "dots": "…", "ldots": "…"},
    **{"cdots": "⋯", "infty": "∞", "to": "→", "rightarrow": "→", "leftarrow": "←", "top": "ᵀ", "partial": "∂"},
    **{"nabla": "∇", "forall": "∀", "exists": "∃", "cup": "∪", "cap": "∩", "setminus": "∖", "subset": "⊂"},
    **{"langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉", "circ": "∘"},
    **{"propto": "∝", "ell": "ℓ", "{": "{", "}": "}", "_": "_", "%": "%", "&": "&", "#": "#", "$": "$"},
}
_WRAPPERS = {
    "text",
    "textrm",
    "mathrm",
    "operatorname",
    "mathbf",
    "mathit",
    "mathcal",
    "mathbb",
    "mathsf",
    "boldsymbol",
}
_ACCENTS = {"hat": "\u0302", "tilde": "\u0303", "bar": "\u0304", "dot": "\u0307", "vec": "\u20d7"}
_COMMAND = re.compile(r"\\([A-Za-z]+|.)")


def _latex_arg(s: str, i: int) -> tuple[str, int]:
    """The argument starting at ``s[i]`` (after spaces): a ``{group}``, a command or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            if s[j] == "{" and s[j - 1] != "\\":
                depth += 1
            elif s[j] == "}" and s[j - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return s[i + 1 : j], j + 1
        return s[i + 1 :], len(s)
    m = _COMMAND.match(s, i)
    if m:
        return m.group(0), m.end()
    return s[i : i + 1], i + 1


def _grouped(text: str) -> str:
    text = text.strip()
    return text if re.fullmatch(r"[\w.ᵀ\u0302\u0303]+", text) else f"({text})"


_WORDS = {"log", "exp", "min", "max", "sum", "prod", "sin", "cos", "tanh", "det", "tr", "arg"}
_OPENING = {"lVert", "lvert", "langle", "lfloor", "lceil", "left", "bigl", "Bigl", "big", "Big"}
_CLOSING = {"rVert", "rvert", "rangle", "rfloor", "rceil", "right", "bigr", "Bigr"}


def latex_to_text(s: str) -> str:
    """LaTeX math as plain text: ``\\frac{a}{b}`` -> ``a/b``, Greek letters and operators as symbols."""
    parts: list[str] = []

    def word(text: str, i: int) -> None:  # a word-like operator (log, softmax, Σ): spaced from its neighbours
        if parts and (parts[-1][-1:].isalnum() or parts[-1][-1:] in ")_}'"):
            parts.append(" ")
        parts.append(text)
        if i < len(s) and (s[i].isalnum() or s[i] == "\\"):
            parts.append(" ")

    i = 0
    while i < len(s):
        if s[i] != "\\":
            if s[i] not in "{}":
                parts.append(s[i])
            i += 1
            continue
        m = _COMMAND.match(s, i)
        assert m is not None
        name, i = m.group(1), m.end()
        if name == "frac":
            a, i = _latex_arg(s, i)
            b, i = _latex_arg(s, i)
            word(f"{_grouped(latex_to_text(a))}/{_grouped(latex_to_text(b))}", i)
        elif name == "sqrt":
            a, i = _latex_arg(s, i)
            parts.append("√" + _grouped(latex_to_text(a)))
        elif name in _WRAPPERS:
            a, i = _latex_arg(s, i)
            text = latex_to_text(a)
            word(text, i) if len(text) > 1 else parts.append(text)
        elif name in _ACCENTS:
            a, i = _latex_arg(s, i)
            text = latex_to_text(a)
            parts.append(text + _ACCENTS[name] if len(text) == 1 else text)
        elif name == "top" and parts and parts[-1] == "^":
            parts[-1] = "ᵀ"
        elif name in _WORDS:
            word(_GREEK_AND_SYMBOLS.get(name, name), i)
        else:
            if name in _CLOSING:
                while parts and parts[-1].isspace():
                    parts.pop()
            parts.append(_GREEK_AND_SYMBOLS.get(name, name))
            if name in _OPENING or name in _CLOSING:
                while i < len(s) and s[i] == " " and name in _OPENING:
                    i += 1
    return re.sub(r" {2,}(?=\S)", lambda m: m.group(0) if len(m.group(0)) >= 4 else " ", "".join(parts)).rstrip()


_ROLE = re.compile(r":(?:math|class|func|meth|mod|attr|data|obj|exc):`(~?)([^`]*)`")


def inline_text(text: str) -> str:
    def role(m: re.Match[str]) -> str:
        if m.group(0).startswith(":math:"):
            return latex_to_text(" ".join(m.group(2).split()))
        target = m.group(2)
        return target.rsplit(".", 1)[-1] if m.group(1) else target

    text = _ROLE.sub(role, text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"\1", text)


def readable_docstring(doc: str) -> str:
    """A docstring for the terminal: ``.. math::`` blocks and ``:math:`` roles as plain-text formulas, roles and
    ````code```` markers removed."""
    lines = inspect.cleandoc(doc).splitlines()
    result: list[str] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        m = re.match(r"(\s*)\.\. math::\s*(.*)$", lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        if prose:
            result += inline_text("\n".join(prose)).split("\n")
            prose = []
        indent = len(m.group(1))
        body = [m.group(2)] if m.group(2).strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        result += [" " * (indent + 4) + latex_to_text(b.strip()) if b.strip() else "" for b in body]
        result.append("")
    if prose:
        result += inline_text("\n".join(prose)).split("\n")
    return "\n".join(result).rstrip()
