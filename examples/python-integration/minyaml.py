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
