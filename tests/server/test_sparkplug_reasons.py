"""Issue 17: every reason label the Sparkplug bridge can count a rejection under is in
topics.REJECT_REASONS and in the table of docs/sparkplug.md, and nothing else is there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from jitstock.server.sparkplug.topics import REJECT_REASONS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "jitstock" / "server" / "sparkplug"
DOC = ROOT / "docs" / "sparkplug.md"
LABEL = re.compile(r"^sparkplug_[a-z_]+$")


def labels_in_code() -> set[str]:
    """String constants that look like a label, outside the table that defines them."""
    found: set[str] = set()
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                continue  # REJECT_REASONS itself
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.Dict):
                    continue
                if (
                    isinstance(child, ast.Constant)
                    and isinstance(child.value, str)
                    and LABEL.match(child.value)
                ):
                    found.add(child.value)
    return found


def labels_in_doc() -> set[str]:
    return set(re.findall(r"^\| `(sparkplug_[a-z_]+)` \|", DOC.read_text(), re.M))


def test_every_label_the_code_counts_is_declared_and_documented() -> None:
    used = labels_in_code()
    assert "sparkplug_malformed" in used  # the scan finds labels at all
    assert used <= set(REJECT_REASONS), used - set(REJECT_REASONS)
    assert labels_in_doc() == set(REJECT_REASONS)
