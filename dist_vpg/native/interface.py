"""The native interface as Python reads it: interface.h parsed into its constants, ctypes structures
and function signatures, so that nothing the C side declares is written a second time here.

The build compiles `layout_source()` beside kernels.c: a table of the C compiler's sizes and offsets
of every declared structure (and the constants' values), which `bind` checks the ctypes structures
against before any call. A library whose layout differs from what Python would pass is refused in
one sentence, and training falls back to the torch path.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import NamedTuple

HEADER = Path(__file__).with_name("interface.h")

_SCALARS = {
    "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
}


class InterfaceError(ValueError):
    """interface.h holds what the parser does not read, or a library disagrees with it."""


class Declared(NamedTuple):
    constants: dict[str, int]
    structs: dict[str, type[ctypes.Structure]]
    functions: dict[str, tuple[object, list]]  # name -> (restype, argtypes)


def parse(text: str) -> Declared:
    """interface.h's declarations: enums of named integers, `typedef struct {...} Name;` of scalars
    and pointers, and function prototypes."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    constants: dict[str, int] = {}
    for body in re.findall(r"\benum\s*\{(.*?)\}\s*;", text, flags=re.S):
        for item in filter(None, (part.strip() for part in body.split(","))):
            name, _, value = (s.strip() for s in item.partition("="))
            constants[name] = int(value, 0)
    text = re.sub(r"\benum\s*\{.*?\}\s*;", " ", text, flags=re.S)
    structs: dict[str, type[ctypes.Structure]] = {}
    for body, name in re.findall(_STRUCT, text, flags=re.S):
        structs[name] = _struct(name, body)
    text = re.sub(_STRUCT, " ", text, flags=re.S)
    functions = {}
    for returns, name, params in re.findall(r"([\w\s\*]+?)\s*\b(dv_\w+)\s*\(([^)]*)\)\s*;", text):
        argtypes = [_ctype(p.rsplit(None, 1)[0] if "*" not in p else p, structs) for p in params.split(",")]
        functions[name] = (_ctype(returns, structs, returned=True), argtypes)
    leftover = re.sub(r"[\w\s\*]+?\bdv_\w+\s*\([^)]*\)\s*;", " ", text).strip()
    if leftover:
        raise InterfaceError(f"interface.h holds a declaration the parser does not read: {leftover[:80]!r}")
    return Declared(constants, structs, functions)


_STRUCT = r"\btypedef\s+struct\s*\{(.*?)\}\s*(\w+)\s*;"


def _struct(name: str, body: str) -> type[ctypes.Structure]:
    fields = [field for line in body.split(";") if line.strip() for field in _fields(line)]
    return type(name, (ctypes.Structure,), {"_fields_": fields})


def _fields(declaration: str) -> list[tuple[str, object]]:
    """`int32_t a, b` or `const float *p` -> [(name, ctype), ...]."""
    first, *more = (part.strip() for part in declaration.split(","))
    match = re.fullmatch(r"((?:const\s+)?\w+)\s*(\*?)\s*(\w+)", first)
    if not match:
        raise InterfaceError(f"interface.h: a field the parser does not read: {first!r}")
    base, star, name = match.groups()
    fields = [(name, ctypes.c_void_p if star else _scalar(base))]
    for extra in more:
        star, name = re.fullmatch(r"(\*?)\s*(\w+)", extra).groups()
        fields.append((name, ctypes.c_void_p if star else _scalar(base)))
    return fields


def _scalar(base: str):
    base = base.replace("const", "").strip()
    if base not in _SCALARS:
        raise InterfaceError(f"interface.h: the type {base!r} is none of {', '.join(_SCALARS)}")
    return _SCALARS[base]


def _ctype(declaration: str, structs: dict, returned: bool = False):
    """A parameter's type (its name already dropped where it has no pointer) or a return type."""
    words = declaration.replace("*", " * ").split()
    stars = words.count("*")
    words = [w for w in words if w not in ("const", "*")]
    if stars and not returned:
        words = words[:-1]  # the parameter's name
    base = words[0] if words else ""
    if returned and stars == 1 and base == "char":
        return ctypes.c_char_p
    if stars == 1 and base in structs:
        return ctypes.POINTER(structs[base])
    if not stars and base in structs:
        return structs[base]  # a struct by value (a task step's Outcome)
    if stars:
        return ctypes.c_void_p
    if base == "void" and returned:
        return None
    return _scalar(base)


def structs_in(source: str) -> dict[str, type[ctypes.Structure]]:
    """The `typedef struct {...} Name;` declarations of a C file (a task's native step declares its
    state so), parsed as in a header; the file's functions are not read."""
    text = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    return {name: _struct(name, body) for body, name in re.findall(_STRUCT, text, flags=re.S)}


DECLARED = parse(HEADER.read_text())
TASK_CONTRACT = parse(HEADER.with_name("task.h").read_text())  # what every task's native step defines


def layout_entries(declared: Declared = DECLARED) -> list[tuple[str, str, int]]:
    """What dv_layout reports, in its order: (C expression, what it is, what ctypes makes of it)."""
    entries = []
    for name, struct in declared.structs.items():
        for field, _ in struct._fields_:
            where = f"the offset of {name}.{field}"
            entries.append((f"offsetof({name}, {field})", where, getattr(struct, field).offset))
        entries.append((f"sizeof({name})", f"the size of {name}", ctypes.sizeof(struct)))
    entries += [(name, f"the value of {name}", value) for name, value in declared.constants.items()]
    return entries


def layout_source(declared: Declared = DECLARED) -> str:
    """The C source of dv_layout(i): the compiler's figure for layout_entries()[i], -1 past the end.
    Compiled after the source that defines what `declared` holds, in one translation unit."""
    table = "".join(f"    (int64_t){expression},\n" for expression, _, _ in layout_entries(declared))
    return (
        "/* Generated at build time by dist_vpg/native/interface.py from the headers. */\n"
        "#include <stddef.h>\n\n"
        f"static const int64_t table[] = {{\n{table}    -1, /* past the end */\n}};\n\n"
        "int64_t dv_layout(int32_t index) {\n"
        "    const int32_t entries = (int32_t)(sizeof table / sizeof table[0]) - 1;\n"
        "    return index >= 0 && index < entries ? table[index] : -1;\n"
        "}\n"
    )


def bind(lib: ctypes.CDLL, declared: Declared = DECLARED) -> ctypes.CDLL:
    """`lib` with every declared function's signature set, once its layout is checked: raises
    InterfaceError naming the first size, offset or constant where the library and Python differ."""
    for name, (restype, argtypes) in declared.functions.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    for index, (_, what, expected) in enumerate(layout_entries(declared)):
        found = lib.dv_layout(index)
        if found != expected:
            raise InterfaceError(
                f"the native library and interface.h disagree on {what} ({found} in C, {expected} in "
                "Python): rebuild it, or set DIST_VPG_NATIVE=0"
            )
    return lib
