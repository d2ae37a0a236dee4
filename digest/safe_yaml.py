"""A YAML loader for front matter whose cost is bounded by the size of the file.

YAML aliases (``*name``) reuse an anchored value (``&name``). Two abuses of them cost a post
reader its run: an alias inside its own anchor (``categories: &r [US, *r]``) makes a cycle that
every walk of the value recurses into until RecursionError, and aliases of aliases ("billion
laughs": nine levels of nine) make 445 bytes stand for 387 million values. ``SafeLoader`` here is
python-frontmatter's safe loader (libyaml when present) that, once the document is composed and
before anything walks or builds it, checks the node graph: no cycle, nesting at most
``MAX_DEPTH``, and at most ``MAX_ALIAS_VALUES`` values reached again through aliases. A breach is
a ``yaml.YAMLError`` with the line of the alias, which the post reader turns into a skip naming
the file. The walk stops at the budget, so the check itself is bounded too. Composing is bounded
before that: at most ``MAX_YAML_CHARS`` characters and ``MAX_VALUES`` values (see SafeLoader).
"""

from __future__ import annotations

import yaml
from frontmatter.default_handlers import SafeLoader as _BaseLoader

MAX_ALIAS_VALUES = 10_000  # values reached a second time, through aliases, in one front matter
MAX_DEPTH = 100  # nested lists/maps; libyaml stops at 1,000, Python code that recurses earlier
MAX_VALUES = 20_000  # values composed (resolved) in one front matter
MAX_YAML_CHARS = 200_000  # front matter that needs the YAML parser


class FrontMatterLimitError(yaml.composer.ComposerError):  # type: ignore[misc]
    """The front matter uses aliases or nesting beyond what a post needs."""


class SafeLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """python-frontmatter's SafeLoader, bounded: size, values composed, and the node graph.

    Composing costs about 20 microseconds a value even with libyaml (it calls back into Python
    to resolve each one), so 100,000 keys took 4.6 s: front matter that YAML must read is
    refused past ``MAX_YAML_CHARS`` characters or ``MAX_VALUES`` values, counted as they are
    composed. (Simple front matter, such as a long ``[a, b, ...]`` category list, never gets
    here: digest.posts reads it without YAML, and caps the categories.)
    """

    def __init__(self, stream: str) -> None:
        if len(stream) > MAX_YAML_CHARS:
            raise FrontMatterLimitError(
                None,
                None,
                f"it is {len(stream):,} characters, more than the {MAX_YAML_CHARS:,} a post can use",
                None,
            )
        super().__init__(stream)
        self._values = 0

    def resolve(self, kind: type, value: object, implicit: object) -> str:
        self._values += 1
        if self._values > MAX_VALUES:
            raise FrontMatterLimitError(
                None, None, f"it has more than {MAX_VALUES:,} values; a post needs a few dozen", None
            )
        tag: str = super().resolve(kind, value, implicit)
        return tag

    def get_single_node(self) -> yaml.Node | None:
        node: yaml.Node | None = super().get_single_node()
        if node is not None:
            check_node(node)
        return node


def check_node(root: yaml.Node) -> None:
    """Raise FrontMatterLimitError if walking ``root`` could recurse for ever or explode.

    Iterative, so the check cannot itself run out of stack. A node seen before is reached
    through an alias: each such visit (and everything under it) counts against the budget.
    """
    seen: set[int] = set()
    on_path: set[int] = set()
    extra = 0
    # (node, children still to visit) for each node on the current path
    stack: list[tuple[yaml.Node, list[yaml.Node]]] = []

    def enter(node: yaml.Node) -> None:
        nonlocal extra
        key = id(node)
        if key in on_path:
            raise FrontMatterLimitError(
                None,
                None,
                "an alias (*name) refers to the value it is part of, which makes it endless; "
                "write the values out instead",
                node.start_mark,
            )
        if key in seen:
            extra += 1
            if extra > MAX_ALIAS_VALUES:
                raise FrontMatterLimitError(
                    None,
                    None,
                    f"aliases (*name) expand to more than {MAX_ALIAS_VALUES:,} values; "
                    "write the values out instead",
                    node.start_mark,
                )
        seen.add(key)
        if isinstance(node, yaml.ScalarNode):
            return
        if len(stack) >= MAX_DEPTH:
            raise FrontMatterLimitError(
                None, None, f"values nested more than {MAX_DEPTH} levels deep", node.start_mark
            )
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        children.reverse()  # popped from the end: document order
        on_path.add(key)
        stack.append((node, children))

    enter(root)
    while stack:
        node, children = stack[-1]
        if children:
            enter(children.pop())
        else:
            stack.pop()
            on_path.discard(id(node))
