"""The small line-based YAML reading the example's manifest and policy readers share.

Not a YAML parser: comments, quoted and plain scalars, flow lists, and the key
pattern of a block mapping's line; the readers follow indentation themselves.
"""

import json
import re

KEY = re.compile(r"^([A-Za-z0-9_.-]+)\s*:(?:\s+(.*))?$")


def strip_comment(line):
    """The line without a trailing `# comment` (a `#` inside quotes is kept)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def scalar(text):
    """A plain, 'single' or "double" quoted scalar, or a flow list of them."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        items = re.findall(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|[^,\s][^,]*', text[1:-1])
        return [scalar(item) for item in items]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return json.loads(text)
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text


def walk(text):
    """Yields `(path, value, item)` for each line of a block-mapping document: `path`
    the keys above it joined by dots (a list item stands as `-`), `value` the text
    after the key (or the list item's text when `item` is true). A list item that is
    itself a mapping (`- name: x`) yields the item, then its first key below `-`.
    Whatever is not a key or an item (block scalars' lines included) is skipped.
    """
    stack = []  # (indent, key) of the mappings and list items we are inside
    for raw in text.splitlines():
        line = strip_comment(raw).rstrip()
        indent, body = len(line) - len(line.lstrip(" ")), line.strip()
        if not body or body in ("---", "..."):
            continue
        if body == "-" or body.startswith("- "):
            while stack and (stack[-1][0] > indent or stack[-1] == (indent, "-")):
                stack.pop()
            item = body[1:].strip()
            yield ".".join(k for _, k in stack), item, True
            stack.append((indent, "-"))
            if not KEY.match(item) or item[0] in "\"'[":
                continue
            indent, body = indent + len(body) - len(item), item  # the item's own column
        match = KEY.match(body)
        if not match:
            continue
        key, value = match.group(1), (match.group(2) or "").strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        yield ".".join([k for _, k in stack] + [key]), value, False
        stack.append((indent, key))
