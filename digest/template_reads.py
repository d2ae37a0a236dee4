"""What an edition template reads, decided from its Jinja syntax tree: may a send assemble it?

A send renders one email per category set. ``digest.assemble.EditionAssembler`` makes that
cheap by rendering each *section* once and only the *frame* (everything around the sections)
per set. That is exact when, and only when, the template's one loop over ``edition.sections``
writes for each section something that depends on nothing but that section: then the
template's output is ``frame before the loop + one piece per section + frame after``, whatever
the set. This module proves that from the template's syntax tree before anything is rendered,
or gives the reason it cannot (the assembler then renders that template directly, every set),
and builds the two templates the assembler runs instead of the original:

- the *frame*: the template with the loop replaced by a marker (``SECTIONS_MARK``);
- the *sections*: the loop alone, after the template's constants it may use.

Inside the loop a template may read the loop variable, names it sets itself, the template's
top-level constants (``{% set rule = "=" * 72 %}``), the renderer's fixed globals (``site``,
the personal-link placeholders), ``range``/``dict``, the window (``edition.id``,
``edition.window_start``/``window_end``/``first_day``/``last_day``) and the loop index of loops
nested in it. Anything else (the reader's categories, the post count, ``loop.index`` of the
sections loop, ``subject``, a namespace shared across sections) makes the template render
directly. Outside the loop anything may be read; what is read decides what a frame is keyed by
(see ``Plan``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import jinja2
from jinja2 import nodes
from jinja2.utils import _PassArg

SECTIONS_MARK = "\x00digest-sections\x00"
EXPRESSION = "qzdigestexpr{}"  # the frame's per-set expression i (see Plan)

WINDOW_ATTRS = frozenset({"id", "window_start", "window_end", "first_day", "last_day"})
_PURE_GLOBALS = frozenset({"range", "dict"})
_NONDETERMINISTIC_FILTERS = frozenset({"random"})
_NONDETERMINISTIC_GLOBALS = frozenset({"lipsum"})
_NOT_SUPPORTED = (
    (nodes.Extends, "{% extends %}"),
    (nodes.Include, "{% include %}"),
    (nodes.Import, "{% import %}"),
    (nodes.FromImport, "{% from ... import %}"),
    (nodes.Macro, "{% macro %}"),
    (nodes.CallBlock, "{% call %}"),
    (nodes.Block, "{% block %}"),
)


@dataclass(frozen=True)
class Plan:
    """How to assemble one template.

    ``frame`` and ``sections``: see the module's docstring. For the HTML template (with
    ``expressions``), each expression outside the loop that reads a per-set value (the reader's
    categories, the post count, ``subject``, ...) is replaced in the frame by the name
    ``EXPRESSION.format(i)``, and ``values`` (a template of just those expressions) computes
    them for a set. ``kinds[i]`` says how the frame uses expression i: ``"print"`` (printed as
    it is: a token stands for it, filled in per set, so it costs nothing), ``"test"`` (an
    ``{% if %}``: frames are kept per truth value) or ``"value"`` (anything else: frames are
    kept per value).
    """

    frame: jinja2.Template
    sections: jinja2.Template
    values: jinja2.Template | None = None
    kinds: tuple[str, ...] = ()
    # per expression: ("name", n) for a bare per-set name, ("attr", a) for ``edition.a``, which
    # need no Jinja to evaluate; None for the rest (computed by ``values``)
    simple: tuple[tuple[str, str] | None, ...] = ()


@dataclass(frozen=True)
class Direct:
    """The template cannot be assembled exactly: each set is rendered in full. ``reason`` says why."""

    reason: str


def plan(
    env: jinja2.Environment,
    name: str,
    per_set: frozenset[str],
    fixed: frozenset[str],
    *,
    expressions: bool = True,
) -> Plan | Direct:
    """The assembly plan for template ``name`` of ``env``, or why there is none.

    ``per_set``: context names whose values differ between category sets (``subject``, ...);
    ``fixed``: context names that are the same for every render (``site``, the placeholders).
    ``expressions``: find and replace the frame's per-set expressions (for a frame compiled
    once and reused: the HTML); without, the frame is rendered with each set's own values.
    """
    if env.loader is None:
        return Direct("the environment has no loader")
    source, filename, _ = env.loader.get_source(env, name)
    tree = env.parse(source, name, filename)
    found = _analyse(tree, env, per_set, fixed, expressions)
    if isinstance(found, Direct):
        return found
    loop_path, constants, exprs = found

    def constant_assigns(tree: nodes.Template, before: int) -> list[nodes.Node]:
        return [
            node
            for i, node in enumerate(tree.body)
            if i < before and isinstance(node, nodes.Assign) and _assigned_name(node) in constants
        ]

    frame_tree = env.parse(source, name, filename)
    replaced = [(_node_at(frame_tree, path), EXPRESSION.format(i)) for i, (path, _) in enumerate(exprs)]
    _replace(frame_tree, _node_at(frame_tree, loop_path), nodes.Output([nodes.TemplateData(SECTIONS_MARK)]))
    for node, var in replaced:
        _replace(frame_tree, node, nodes.Name(var, "load"))
    sections_tree = env.parse(source, name, filename)
    loop = _node_at(sections_tree, loop_path)
    assert isinstance(loop, nodes.For)
    sections_only = nodes.Template([*constant_assigns(sections_tree, loop_path[0]), loop], lineno=1)
    values = None
    simple = tuple(_simple(_node_at(tree, path)) for path, _ in exprs)
    if any(form is None for form in simple):
        values_tree = env.parse(source, name, filename)
        assigns: list[nodes.Node] = []
        for i, (path, _) in enumerate(exprs):
            expr = _node_at(values_tree, path)
            assert isinstance(expr, nodes.Expr)
            if simple[i] is None:
                assigns.append(
                    nodes.Assign(nodes.Name(EXPRESSION.format(i), "store"), expr, lineno=expr.lineno)
                )
        body = constant_assigns(values_tree, len(values_tree.body)) + assigns
        values = _compile(env, nodes.Template(body, lineno=1), name, filename)
    return Plan(
        frame=_compile(env, frame_tree, name, filename),
        sections=_compile(env, sections_only, name, filename),
        values=values,
        kinds=tuple(kind for _, kind in exprs),
        simple=simple,
    )


def _simple(node: nodes.Node | None) -> tuple[str, str] | None:
    if isinstance(node, nodes.Name):
        return ("name", node.name) if node.name != "edition" else None
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "edition":
        return ("attr", node.attr)
    return None


_Found = tuple[tuple[int, ...], frozenset[str], list[tuple[tuple[int, ...], str]]]


def _analyse(
    tree: nodes.Template,
    env: jinja2.Environment,
    per_set: frozenset[str],
    fixed: frozenset[str],
    expressions: bool,
) -> _Found | Direct:
    for kind, tag in _NOT_SUPPORTED:
        for _ in tree.find_all(kind):
            return Direct(f"it uses {tag}")
    for f in tree.find_all(nodes.Filter):
        if f.name in _NONDETERMINISTIC_FILTERS or _passes_context(env.filters.get(f.name)):
            return Direct(f"the filter `{f.name}` gives a different result each render or reads the context")
    for t in tree.find_all(nodes.Test):
        if _passes_context(env.tests.get(t.name)):
            return Direct(f"the test `{t.name}` reads the context")
    for n in tree.find_all(nodes.Name):
        if n.name in _NONDETERMINISTIC_GLOBALS:
            return Direct(f"`{n.name}` gives a different result each render")

    loops = [path for path, node in _walk(tree) if isinstance(node, nodes.For) and _is_sections(node.iter)]
    if len(loops) != 1:
        return Direct(
            "it has no loop over edition.sections"
            if not loops
            else "it loops over edition.sections more than once"
        )
    loop_path = loops[0]
    ancestors = _ancestors(tree, loop_path)
    if not all(isinstance(a, nodes.Template | nodes.If) for a in ancestors):
        kinds = ", ".join(sorted({type(a).__name__ for a in ancestors} - {"Template", "If"}))
        return Direct(f"the loop over edition.sections is inside {kinds} (only {{% if %}} may hold it)")
    loop = _node_at(tree, loop_path)
    assert isinstance(loop, nodes.For)
    if not isinstance(loop.target, nodes.Name) or loop.else_ or loop.test is not None or loop.recursive:
        return Direct("the loop over edition.sections has an else, a filter, a tuple target or is recursive")

    constants = _constants(tree)
    stored_inside = {
        n.name for node in loop.body for n in node.find_all(nodes.Name) if n.ctx in ("store", "param")
    }
    stored_outside = {
        n.name
        for path, n in _walk(tree)
        if isinstance(n, nodes.Name) and n.ctx in ("store", "param") and not _within(path, loop_path)
    }
    clash = stored_inside & (stored_outside | per_set | fixed | {"edition", "loop", loop.target.name})
    if clash:
        return Direct(
            f"the loop over edition.sections sets {', '.join(sorted(clash))}, a name also used outside it"
        )
    allowed = {loop.target.name} | stored_inside | constants | fixed | _PURE_GLOBALS
    problem = _check_body(loop.body, allowed, depth=0)
    if problem:
        return Direct(f"each section's part reads {problem}, so it is not the same in every set")

    if not expressions:
        return loop_path, frozenset(constants), []
    given = per_set | fixed | {"edition"}
    if given & (stored_inside | stored_outside):
        return Direct(
            f"it sets `{sorted(given & (stored_inside | stored_outside))[0]}`, a name the renderer gives"
        )
    parents = {id(child): node for _, node in _walk(tree) for child in node.iter_child_nodes()}
    paths = {id(node): path for path, node in _walk(tree)}
    readable = per_set | fixed | _PURE_GLOBALS | {"edition"}
    exprs: dict[int, tuple[tuple[int, ...], str]] = {}
    for path, node in _walk(tree):
        if _within(path, loop_path) or not isinstance(node, nodes.Name) or node.ctx != "load":
            continue
        if node.name not in per_set and node.name != "edition":
            continue
        parent = parents.get(id(node))
        if node.name == "edition":
            if not isinstance(parent, nodes.Getattr):
                return Direct("it uses `edition` as a whole (only its attributes can be followed)")
            if parent.attr == "sections":
                return Direct("it reads edition.sections outside its loop over them")
        # The whole expression this read is part of, up to the statement that uses it.
        expr: nodes.Node = node
        while isinstance(parents.get(id(expr)), nodes.Expr | nodes.Helper):
            expr = parents[id(expr)]
        if id(expr) in exprs:
            continue
        statement = parents[id(expr)]
        for name in expr.find_all(nodes.Name):
            if name.name in readable:
                continue
            if name.name in constants and _top_index(tree, name.name) < paths[id(expr)][0]:
                continue
            return Direct(
                f"line {expr.lineno}: an expression reads a per-set value together with "
                f"`{name.name}`, which only the template knows"
            )
        ancestors = [*_ancestors(tree, paths[id(statement)]), statement]
        printed = isinstance(statement, nodes.Output) and not any(
            isinstance(a, nodes.AssignBlock | nodes.FilterBlock | nodes.EvalContextModifier)
            for a in ancestors
        )
        tested = isinstance(statement, nodes.If) and statement.test is expr
        exprs[id(expr)] = (paths[id(expr)], "print" if printed else "test" if tested else "value")
    return loop_path, frozenset(constants), list(exprs.values())


def _top_index(tree: nodes.Template, name: str) -> int:
    """Where the top-level ``{% set name = ... %}`` is in the template's body."""
    return next(
        i
        for i, node in enumerate(tree.body)
        if isinstance(node, nodes.Assign) and _assigned_name(node) == name
    )


def _check_body(body: list[nodes.Node], allowed: set[str], depth: int) -> str | None:
    """The first thing the loop body reads that is not a function of the section, or None."""
    for node in body:
        problem = _check(node, allowed, depth, parent=None)
        if problem:
            return problem
    return None


def _check(node: nodes.Node, allowed: set[str], depth: int, parent: nodes.Node | None) -> str | None:
    if isinstance(node, nodes.Name) and node.ctx == "load":
        if node.name in allowed:
            return None
        if node.name == "loop":
            return None if depth > 0 else "`loop` (its position among the sections)"
        if node.name == "edition" and isinstance(parent, nodes.Getattr) and parent.attr in WINDOW_ATTRS:
            return None
        if node.name == "edition" and isinstance(parent, nodes.Getattr):
            return f"edition.{parent.attr}"
        return f"`{node.name}`"
    if isinstance(node, nodes.NSRef):
        return f"the namespace `{node.name}` (shared between sections)"
    if isinstance(node, nodes.ContextReference | nodes.DerivedContextReference):
        return "the template context"
    if isinstance(node, nodes.For):
        if node.recursive:
            return "a recursive loop"
        for child in (node.target, node.iter, node.test, *node.else_):
            if child is not None and (problem := _check(child, allowed, depth, node)):
                return problem
        for child in node.body:
            if problem := _check(child, allowed, depth + 1, node):
                return problem
        return None
    for child in node.iter_child_nodes():
        if problem := _check(child, allowed, depth, node):
            return problem
    return None


def _constants(tree: nodes.Template) -> set[str]:
    """Names set once, at the top level, to an expression of constants (no names, no calls)."""
    counts: dict[str, int] = {}
    for n in tree.find_all(nodes.Name):
        if n.ctx in ("store", "param"):
            counts[n.name] = counts.get(n.name, 0) + 1
    found = set()
    for node in tree.body:
        name = _assigned_name(node) if isinstance(node, nodes.Assign) else None
        if name and counts.get(name) == 1 and _is_constant(node.node):  # type: ignore[attr-defined]
            found.add(name)
    return found


def _is_constant(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Name | nodes.Call | nodes.List | nodes.Dict | nodes.Getattr | nodes.Getitem):
        return False  # a name may change; a list or dict may be changed in place
    return all(_is_constant(child) for child in node.iter_child_nodes())


def _assigned_name(node: nodes.Assign) -> str | None:
    return node.target.name if isinstance(node.target, nodes.Name) else None


def _is_sections(node: nodes.Node) -> bool:
    return (
        isinstance(node, nodes.Getattr)
        and node.attr == "sections"
        and isinstance(node.node, nodes.Name)
        and node.node.name == "edition"
    )


def _passes_context(func: object) -> bool:
    return getattr(func, "jinja_pass_arg", None) is _PassArg.context


# -- paths into the tree: tuples of child indexes (stable across two parses of one source) --------


def _walk(node: nodes.Node, path: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], nodes.Node]]:
    yield path, node
    for i, child in enumerate(node.iter_child_nodes()):
        yield from _walk(child, (*path, i))


def _node_at(tree: nodes.Node, path: tuple[int, ...]) -> nodes.Node | None:
    node: nodes.Node = tree
    for i in path:
        children = list(node.iter_child_nodes())
        if i >= len(children):
            return None
        node = children[i]
    return node


def _ancestors(tree: nodes.Node, path: tuple[int, ...]) -> list[nodes.Node]:
    found = []
    for n in range(len(path)):
        node = _node_at(tree, path[:n])
        assert node is not None
        found.append(node)
    return found


def _within(path: tuple[int, ...], loop_path: tuple[int, ...]) -> bool:
    return path[: len(loop_path)] == loop_path


def _replace(tree: nodes.Template, old: nodes.Node | None, new: nodes.Node) -> None:
    """Put ``new`` where ``old`` is in ``tree`` (a field of its parent, or an item of a list field)."""
    assert old is not None
    for parent in [tree, *tree.find_all(nodes.Node)]:
        for field in parent.fields:
            value = getattr(parent, field)
            if value is old:
                setattr(parent, field, new)
            elif isinstance(value, list) and any(item is old for item in value):
                value[[id(item) for item in value].index(id(old))] = new
            else:
                continue
            new.set_lineno(old.lineno)
            return
    raise AssertionError("the node is in the tree (found by _analyse)")


def _compile(
    env: jinja2.Environment, tree: nodes.Template, name: str, filename: str | None
) -> jinja2.Template:
    tree.set_environment(env)
    code = env.compile(tree, name, filename)
    globals_: Mapping[str, object] = env.make_globals(None)
    return env.template_class.from_code(env, code, globals_)  # type: ignore[arg-type]
