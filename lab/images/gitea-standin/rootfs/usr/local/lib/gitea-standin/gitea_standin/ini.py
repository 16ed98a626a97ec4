"""app.ini as Gitea's INI library (go-ini, loaded with KeyValueDelimiters "=") reads and writes it.

The rules copied because they change values, not just looks:
- an unquoted value ends at the first '#' or ';' (inline comment), so a secret containing either
  must be quoted; on write such values get backticks, values with '`' or a newline get triple quotes,
  values with outer spaces get double quotes (what go-ini does);
- a value wrapped in matching '...' or "..." (and no other such quote inside) loses the quotes;
- the last occurrence of a key wins; section names are case-sensitive;
- keys before the first [section] live in the default section, named "" here; a `[DEFAULT]` header
  is that same section (go-ini's DefaultSection), while `[default]` is an ordinary other section.
Comments, blank lines and key order of an existing file are kept when keys are set.
"""

import os
import tempfile

ROOT = ""

_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}


def parse_bool(value, default=False):
    v = (value or "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return default


def parse_value(raw):
    s = raw.strip()
    if not s:
        return ""
    if s.startswith('"""') and len(s) > 3:
        end = s.rfind('"""', 3)
        if end >= 3:
            return s[3:end]
    if s[0] == "`":
        end = s.rfind("`", 1)
        if end > 0:
            return s[1:end]
    cut = [i for i in (s.find("#"), s.find(";")) if i >= 0]
    if cut:
        s = s[: min(cut)].strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"" and s.count(s[0]) == 2:
        s = s[1:-1]
    return s


def format_value(value):
    if "\n" in value or "`" in value:
        return '"""' + value + '"""'
    if "#" in value or ";" in value:
        return "`" + value + "`"
    if value != value.strip():
        return '"' + value + '"'
    return value


class IniFile:
    def __init__(self, text="", path=None):
        self.lines = text.splitlines()
        self.path = path

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(f.read(), path)

    def _scan(self):
        """(section -> index of its header line, list of (line index, section, key, raw value))."""
        section = ROOT
        headers = {ROOT: -1}
        keys = []
        for i, line in enumerate(self.lines):
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s[0] == "[" and "]" in s:
                section = s[1 : s.index("]")].strip()
                if section == "DEFAULT":
                    section = ROOT
                headers.setdefault(section, i)
                continue
            if "=" in s:
                k, v = s.split("=", 1)
                keys.append((i, section, k.strip(), v))
        return headers, keys

    def sections(self):
        return list(self._scan()[0])

    def get(self, section, key, default=None):
        value = default
        for _, sec, k, raw in self._scan()[1]:
            if sec == section and k == key:
                value = parse_value(raw)
        return value

    def has(self, section, key):
        return any(sec == section and k == key for _, sec, k, _ in self._scan()[1])

    def set(self, section, key, value):
        """Set a key; returns True when the stored value changed."""
        headers, keys = self._scan()
        line = f"{key} = {format_value(value)}"
        mine = [i for i, sec, k, _ in keys if sec == section and k == key]
        if mine:
            old = self.get(section, key)
            self.lines[mine[-1]] = line
            return old != value
        if section in headers:
            in_section = [i for i, sec, _, _ in keys if sec == section]
            at = (in_section[-1] if in_section else headers[section]) + 1
            if section == ROOT and not in_section:
                at = 0
            self.lines.insert(at, line)
        else:
            if self.lines and self.lines[-1].strip():
                self.lines.append("")
            self.lines.extend([f"[{section}]", line])
        return True

    def text(self):
        return "\n".join(self.lines) + "\n"

    def save_to(self, path=None, mode=None):
        """Write through a temporary file and rename (what go-ini's SaveTo does); a bind-mounted
        single app.ini therefore cannot be rewritten, as with Gitea. mode=None keeps the umask."""
        path = path or self.path
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".app.ini.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.text())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, mode if mode is not None else 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
