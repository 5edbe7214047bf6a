"""Find uses of other packages' internals in our code, by reading it (``ast``), not running it.

Issue #20's rule: no attribute or method whose name starts with ``_`` is read, written or replaced
on an object of another package, and no process-wide patching of another package. The scanner
reports, with its reason:

* **A private attribute on something not our own**: ``x._name`` or ``x.__name__`` where ``x`` is
  not shown to be ours. Allowed are

  - ``self``, ``cls`` and ``super()``: our own object, in a class of ours. In a class that inherits
    from another package's class, ``self._name`` / ``cls._name`` / ``super()._name`` is allowed
    only when our class (or a class of ours it inherits from) defines ``_name`` (a method, a
    class attribute, or an assignment ``self._name = ...``); otherwise it is the other package's
    private state. Dunders on ``super()`` (``super().__init__(...)``) are allowed.
  - documented public names that start with ``_`` (:data:`DOCUMENTED_PUBLIC`: a Row's
    ``_mapping``, a namedtuple's ``_asdict``/``_replace``, enum's ``_missing_``...);
  - Python's own public dunders (:data:`PUBLIC_DUNDERS`: ``__name__``, ``__doc__``, ``__class__``,
    ``__cause__``...);
  - ``object.__setattr__(self, ...)`` called in a method of a class of ours that inherits from no
    other package's class (a frozen dataclass setting its own field in ``__post_init__``): the
    object and all its machinery are ours. On a pydantic model of ours it would go around
    pydantic, and ``object.__setattr__`` or ``object.__new__`` on anything else (or kept in a
    variable) is reported;
  - an attribute of one of our modules or classes (a name imported from ``shared``, ``services``
    or ``guanhuai``, relative imports included, or a class of the same module) that our module
    or class defines. ``EventMessage.__new__`` is reported: ``__new__`` is pydantic's.

  Anything else (a local variable, a parameter, a call's result, ``self._conn._execute``) is not
  known to be ours and is reported.
  ``getattr`` / ``hasattr`` / ``setattr`` / ``delattr`` with a literal name are the same access
  spelled differently and follow the same rules.
* **An override of a private method**: a class of ours that inherits from another package's class
  and defines a method ``_name`` (not a dunder, not documented public) that that class has
  (found by importing it; a base that cannot be imported is reported too). A new private helper
  on such a class is fine.
* **A patch**: an assignment, augmented assignment or ``del`` of an attribute of an imported
  module or class of another package (``JetStreamContext.PullSubscription.fetch = ...``), or
  ``setattr`` / ``delattr`` on one.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

OWN_PACKAGES = ("shared", "services", "guanhuai")

# Names that start with "_" and are documented public API of the package that owns them.
DOCUMENTED_PUBLIC = frozenset({
    # SQLAlchemy Row / namedtuple
    "_mapping", "_asdict", "_fields", "_replace", "_make", "_t", "_tuple", "_field_defaults",
    # enum's documented hooks and members' attributes ("sunder" names)
    "_missing_", "_generate_next_value_", "_value_", "_name_", "_ignore_", "_order_",
})

# Python's own protocol attributes that are public to read.
PUBLIC_DUNDERS = frozenset({
    "__name__", "__qualname__", "__module__", "__doc__", "__class__", "__members__", "__version__",
    "__file__", "__cause__", "__context__", "__traceback__",
})


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    code: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code}  # {self.why}"


# What a name or dotted expression stands for: one of our modules, one of our classes, some other
# top-level name of ours, or something of another package ("foreign", with its dotted path).
@dataclass(frozen=True)
class Ref:
    kind: str  # "module", "class", "name", "foreign"
    module: str
    name: str = ""


@dataclass
class _Class:
    module: str
    name: str
    node: ast.ClassDef
    defines: set[str] = field(default_factory=set)


@dataclass
class _Module:
    name: str
    path: str
    tree: ast.Module
    is_package: bool
    imports: dict[str, Ref | tuple[str, str]] = field(default_factory=dict)  # local name -> module ref or (module, name)
    top: set[str] = field(default_factory=set)
    classes: dict[str, _Class] = field(default_factory=dict)


def _module_name(path: str) -> tuple[str, bool]:
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _own(dotted: str) -> bool:
    return dotted.split(".")[0] in OWN_PACKAGES


def _targets(node: ast.AST) -> Iterator[ast.AST]:
    if isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            yield from _targets(elt)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)
    else:
        yield node


def _class_defines(node: ast.ClassDef) -> set[str]:
    """The names a class body defines, and the attributes its methods assign on ``self``/``cls``."""
    names: set[str] = set()
    for stmt in node.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                names |= {t.id for t in _targets(target) if isinstance(t, ast.Name)}
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in sub.targets if isinstance(sub, ast.Assign) else [sub.target]:
                for t in _targets(target):
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in ("self", "cls"):
                        names.add(t.attr)
        elif (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "__setattr__"
              and len(sub.args) >= 2 and isinstance(sub.args[0], ast.Name) and sub.args[0].id == "self"
              and isinstance(sub.args[1], ast.Constant) and isinstance(sub.args[1].value, str)):
            names.add(sub.args[1].value)
    return names


class Project:
    """Our modules, parsed, with what each imports and defines."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self.modules: dict[str, _Module] = {}
        for path, text in sources.items():
            name, is_package = _module_name(path)
            self.modules[name] = _Module(name, path, ast.parse(text, filename=path), is_package)
        for module in self.modules.values():
            self._index(module)

    def _index(self, module: _Module) -> None:
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        module.imports[alias.asname] = self._module_ref(alias.name)
                    else:
                        top = alias.name.split(".")[0]
                        module.imports[top] = self._module_ref(top)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    module.imports[alias.asname or alias.name] = (source, alias.name)
        for stmt in module.tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                module.top.add(stmt.name)
            elif isinstance(stmt, ast.ClassDef):
                module.top.add(stmt.name)
                module.classes[stmt.name] = _Class(module.name, stmt.name, stmt, _class_defines(stmt))
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                    module.top |= {t.id for t in _targets(target) if isinstance(t, ast.Name)}
        module.top |= set(module.imports)

    def _module_ref(self, dotted: str) -> Ref:
        return Ref("module", dotted) if _own(dotted) else Ref("foreign", dotted)

    # -- resolution ---------------------------------------------------------------------------
    def member(self, module: str, name: str, depth: int = 0) -> Ref:
        """What ``name`` is in our module ``module`` (following re-exports)."""
        if f"{module}.{name}" in self.modules:
            return Ref("module", f"{module}.{name}")
        mod = self.modules.get(module)
        if mod is None or depth > 10:
            return Ref("name", module, name)
        if name in mod.classes:
            return Ref("class", module, name)
        bound = mod.imports.get(name)
        if bound is not None:
            return self._bound(bound, depth + 1)
        return Ref("name", module, name)

    def _bound(self, bound: Ref | tuple[str, str], depth: int = 0) -> Ref:
        if isinstance(bound, Ref):
            return bound
        source, name = bound
        if not _own(source):
            return Ref("foreign", f"{source}.{name}")
        return self.member(source, name, depth)

    def resolve(self, expr: ast.AST, module: _Module) -> Ref | None:
        """What an expression names, if it is an imported name, one of the module's classes or a
        builtin, or an attribute of one of these; None for anything else (a variable, a call)."""
        if isinstance(expr, ast.Name):
            if expr.id in module.imports:
                return self._bound(module.imports[expr.id])
            if expr.id in module.classes:
                return Ref("class", module.name, expr.id)
            if expr.id in module.top:
                return Ref("name", module.name, expr.id)
            if hasattr(builtins, expr.id):
                return Ref("foreign", f"builtins.{expr.id}")
            return None
        if isinstance(expr, ast.Attribute):
            base = self.resolve(expr.value, module)
            if base is None:
                return None
            if base.kind == "foreign":
                return Ref("foreign", f"{base.module}.{expr.attr}")
            if base.kind == "module":
                return self.member(base.module, expr.attr)
            return Ref("name", base.module, f"{base.name}.{expr.attr}")
        if isinstance(expr, ast.Subscript):  # Generic[T], Base[int]
            return self.resolve(expr.value, module)
        return None

    def defines(self, ref: Ref, attr: str) -> bool:
        """Whether our module or class ``ref`` defines ``attr`` (a class: itself or a class of ours
        it inherits from)."""
        if ref.kind == "module":
            mod = self.modules.get(ref.module)
            return mod is not None and (attr in mod.top or f"{ref.module}.{attr}" in self.modules)
        if ref.kind == "class":
            return attr in self.class_names(ref)
        return False

    def class_names(self, ref: Ref, seen: frozenset[Ref] = frozenset()) -> set[str]:
        cls = self.modules[ref.module].classes.get(ref.name) if ref.module in self.modules else None
        if cls is None or ref in seen:
            return set()
        names = set(cls.defines)
        for base in self.bases(cls):
            if base.kind == "class":
                names |= self.class_names(base, seen | {ref})
        return names

    def bases(self, cls: _Class) -> list[Ref]:
        module = self.modules[cls.module]
        out = []
        for expr in cls.node.bases:
            ref = self.resolve(expr, module)
            out.append(ref if ref is not None else Ref("foreign", ast.unparse(expr)))
        return out

    def foreign_bases(self, cls: _Class, seen: frozenset[str] = frozenset()) -> list[Ref]:
        """The other packages' classes a class of ours inherits from (through our own classes too)."""
        key = f"{cls.module}.{cls.name}"
        if key in seen:
            return []
        out = []
        for base in self.bases(cls):
            if base.kind == "class" and base.module in self.modules and base.name in self.modules[base.module].classes:
                out += self.foreign_bases(self.modules[base.module].classes[base.name], seen | {key})
            elif base.kind == "foreign" and base.module != "builtins.object":
                out.append(base)
        return out


@functools.cache
def foreign_defines(dotted: str) -> frozenset[str] | None:
    """The names another package's class defines, through its bases: what its class bodies hold
    and what its methods assign on ``self`` (read from its source). None: it cannot be imported."""
    try:
        obj = _import_foreign(dotted)
    except (ImportError, AttributeError):
        return None
    if not isinstance(obj, type):
        return frozenset(dir(obj))
    names: set[str] = set()
    for klass in inspect.getmro(obj):
        if klass is object:
            continue
        names |= set(vars(klass))
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                names |= _class_defines(node)
    return frozenset(names)


def _import_foreign(dotted: str) -> object:
    """The object a dotted path of another package names (imported), or raise ImportError."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


class _Scanner(ast.NodeVisitor):
    def __init__(self, project: Project, module: _Module) -> None:
        self.project, self.module = project, module
        self.findings: list[Finding] = []
        self.classes: list[_Class] = []  # the enclosing classes, innermost last
        self.functions: list[ast.AST] = []
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(module.tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent

    def report(self, node: ast.AST, why: str) -> None:
        self.findings.append(Finding(self.module.path, getattr(node, "lineno", 0), ast.unparse(node), why))

    # -- classes: overrides of private methods ------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        cls = self.module.classes.get(node.name) if not self.functions and not self.classes else None
        if cls is None:
            cls = _Class(self.module.name, node.name, node, _class_defines(node))
        foreign = self.project.foreign_bases(cls)
        for stmt in node.body:
            if (isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name.startswith("_")
                    and not is_dunder(stmt.name) and stmt.name not in DOCUMENTED_PUBLIC):
                for base in foreign:
                    theirs = foreign_defines(base.module)
                    if theirs is None or stmt.name in theirs:  # theirs, or cannot tell: report it
                        self.findings.append(Finding(self.module.path, stmt.lineno, f"def {node.name}.{stmt.name}",
                                                     f"overrides a private method of {base.module}"))
                        break
        self.classes.append(cls)
        self.generic_visit(node)
        self.classes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    # -- patches --------------------------------------------------------------------------------
    def _check_target(self, target: ast.AST) -> None:
        for t in _targets(target):
            if isinstance(t, ast.Attribute):
                ref = self.project.resolve(t.value, self.module)
                if ref is not None and ref.kind == "foreign":
                    self.report(t, f"changes an attribute of {ref.module} (another package) for the whole process")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign | ast.AnnAssign) -> None:
        self._check_target(node.target)
        self.generic_visit(node)

    visit_AnnAssign = visit_AugAssign

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") and node.args:
            ref = self.project.resolve(node.args[0], self.module)
            if ref is not None and ref.kind == "foreign":
                self.report(node, f"changes an attribute of {ref.module} (another package) for the whole process")
        if (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str) and node.args[1].value.startswith("_")):
            # getattr(x, "_name") is x._name by another spelling
            why = self._private_access(ast.Attribute(value=node.args[0], attr=node.args[1].value, ctx=ast.Load()))
            if why:
                self.report(node, why)
        self.generic_visit(node)

    # -- private attributes -----------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        why = self._private_access(node) if node.attr.startswith("_") else None
        if why:
            self.report(node, why)
        self.generic_visit(node)

    def _own_object_setattr(self, node: ast.Attribute) -> bool:
        call = self.parents.get(node)
        return (node.attr == "__setattr__" and isinstance(node.value, ast.Name) and node.value.id == "object"
                and isinstance(call, ast.Call) and call.func is node and bool(call.args)
                and isinstance(call.args[0], ast.Name) and call.args[0].id == "self"
                and bool(self.classes) and bool(self.functions) and not self.project.foreign_bases(self.classes[-1]))

    def _private_access(self, node: ast.Attribute) -> str | None:
        attr, value = node.attr, node.value
        if attr in DOCUMENTED_PUBLIC or attr in PUBLIC_DUNDERS:
            return None
        if self._own_object_setattr(node):
            return None
        cls = self.classes[-1] if self.classes else None
        on_self = isinstance(value, ast.Name) and value.id in ("self", "cls")
        on_super = (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super")
        if (on_self or on_super) and cls is not None:
            if not self.project.foreign_bases(cls):
                return None
            if on_super and is_dunder(attr):
                return None
            foreign = self.project.foreign_bases(cls)
            # theirs if a base defines it (or cannot be read: then it is not shown to be ours)
            owners = [b.module for b in foreign if attr in (foreign_defines(b.module) or {attr})]
            if not owners and (attr in self.project.class_names(Ref("class", cls.module, cls.name)) or attr in cls.defines):
                return None
            return f"{attr} is not ours: it belongs to {', '.join(owners or [b.module for b in foreign])}"
        ref = self.project.resolve(value, self.module)
        if ref is not None and ref.kind in ("module", "class"):
            if self.project.defines(ref, attr):
                return None
            return f"{attr} is not defined by our {ref.module}{'.' + ref.name if ref.name else ''} (another package's)"
        if ref is not None and ref.kind == "foreign":
            return f"private attribute of {ref.module} (another package)"
        return "private attribute of an object not known to be ours"


def scan_sources(sources: Mapping[str, str]) -> list[Finding]:
    """Findings in ``sources`` (path relative to the repository, e.g. ``shared/x.py`` -> text)."""
    project = Project(sources)
    findings: list[Finding] = []
    for module in project.modules.values():
        scanner = _Scanner(project, module)
        scanner.visit(module.tree)
        findings += scanner.findings
    return sorted(findings, key=lambda f: (f.path, f.line, f.code))


def scan_tree(root: Path, folders: tuple[str, ...] = OWN_PACKAGES) -> list[Finding]:
    """Findings in every module of ``folders`` under the repository ``root``."""
    sources = {
        str(path.relative_to(root)): path.read_text(encoding="utf-8")
        for folder in folders for path in sorted((root / folder).rglob("*.py"))
    }
    return scan_sources(sources)
