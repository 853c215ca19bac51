#!/usr/bin/env python3
"""Docs and repository hygiene checks, run by launch/test.sh before the build.

1. Every relative Markdown link in README.md and docs/**/*.md names an existing file, and a `#anchor`
   names a heading of the target (GitHub's slugs: lowercase, spaces to '-', punctuation other than
   '-' and '_' removed, repeated headings get '-1', '-2', ...).
2. Every cross-reference written in prose, in the docs and in the comments of the tracked sources,
   scripts and configs: `docs/NAME.md` names an existing file, and `docs/NAME.md, "Heading"` (also
   `docs/NAME.md "Heading"`, `docs/NAME.md` ("Heading")) names a heading of it: the quoted words,
   case and backticks aside, are the heading or its first words (a leading "The" of the heading may
   be left out), so "Stopping a run" names "Stopping a run: Ctrl-C, SIGTERM, preemption".
3. No line of a Swift file under Sources/ or Tests/ is longer than 120 characters.
4. No `__pycache__` folder or `*.pyc` file is tracked by git.
5. The module edges of docs/architecture.md: the targets that must not link MPI (KDCore, KDData,
   KDModels, KDLosses, KDTestSupport, KDTensor, KDFormats) import neither CMPI nor KDComm.

Prints one line per failure and ends with "N passed, M failed"; exits 1 when anything failed.
Standard library only. Run from anywhere: paths are taken relative to the repository root.
"""
import os
import re
import subprocess
import sys
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAX_SWIFT_LINE = 120

passed = 0
failed = 0


def fail(message):
    global failed
    failed += 1
    print(f"FAIL {message}")


def ok():
    global passed
    passed += 1


def rel(path):
    return os.path.relpath(path, ROOT)


def markdown_files():
    files = [os.path.join(ROOT, "README.md")]
    for folder, _, names in os.walk(os.path.join(ROOT, "docs")):
        files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".md")]
    return [f for f in files if os.path.isfile(f)]


FENCE = re.compile(r"^\s*(```|~~~)")


def fenced_lines(text):
    """Each line with whether it is inside (or delimits) a fenced code block."""
    fence = None
    for line in text.splitlines():
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            yield line, True
            continue
        yield line, fence is not None


def prose_lines(text):
    """The lines outside fenced code blocks, with inline code spans blanked (fenced lines as "", so line
    numbers stay those of the file)."""
    for line, fenced in fenced_lines(text):
        yield "" if fenced else re.sub(r"`+[^`]*`+", "", line)


def slug(heading):
    text = heading.strip().lower()
    text = re.sub(r"<[^>]+>", "", text)                 # inline HTML
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = text.replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)                # punctuation, except '-' and '_'
    return text.replace(" ", "-")


_anchor_cache = {}


def anchors(path):
    if path not in _anchor_cache:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        seen = {}
        found = set()
        for line in prose_lines_keep_code(text):
            m = re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        found |= set(re.findall(r'<a\s+(?:name|id)="([^"]+)"', text))
        _anchor_cache[path] = found
    return _anchor_cache[path]


def prose_lines_keep_code(text):
    """The lines outside fenced code blocks (headings keep their inline code)."""
    for line, fenced in fenced_lines(text):
        if not fenced:
            yield line


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFDEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")


def check_links():
    for md in markdown_files():
        with open(md, encoding="utf-8") as f:
            text = f.read()
        for number, line in enumerate(prose_lines(text), start=1):
            targets = [m.group(1) for m in LINK.finditer(line)]
            m = REFDEF.match(line)
            if m:
                targets.append(m.group(1))
            for target in targets:
                check_link(md, number, target)


def check_link(md, number, target):
    where = f"{rel(md)}:{number}: link '{target}'"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto:, ...
        return
    path_part, _, anchor = target.partition("#")
    path_part = urllib.parse.unquote(path_part)
    if path_part.startswith("/"):
        fail(f"{where}: absolute path; links must be relative")
        return
    dest = md if path_part == "" else os.path.normpath(os.path.join(os.path.dirname(md), path_part))
    if not os.path.exists(dest):
        fail(f"{where}: no file {rel(dest)}")
        return
    if anchor:
        if not dest.endswith(".md") or os.path.isdir(dest):
            fail(f"{where}: anchor on a file that is not Markdown")
            return
        if urllib.parse.unquote(anchor).lower() not in anchors(dest):
            fail(f"{where}: no heading #{anchor} in {rel(dest)}")
            return
    ok()


PROSE_FILE_SUFFIXES = (".md", ".swift", ".sh", ".py", ".yaml", ".yml", ".sbatch", ".txt")
DOC_PATH = r"(?:docs/[\w./-]*\w|README)\.md"
# `docs/X.md, "Heading"` (a comma between): a path that ends a string literal (`"docs/X.md")`) is code.
PROSE_REF = re.compile(r"(" + DOC_PATH + r")`?\s*,\s*\(?\s*\"([^\"]+)\"")
PROSE_PATH = re.compile(r"(?<![\w./-])(?<!\]\()(" + DOC_PATH + r")(?![\w/-])")
COMMENT_LEAD = re.compile(r"^\s*(?:///?|#+(?=\s)|\*)?\s*")


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return out.splitlines()
    except (OSError, subprocess.CalledProcessError) as error:
        fail(f"git ls-files: {error}")
        return []


def heading_texts(path):
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in prose_lines_keep_code(f.read()):
            m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m:
                texts.append(normalise(m.group(1)))
    return texts


def normalise(text):
    return re.sub(r"\s+", " ", text.replace("`", "")).strip().lower()


def names_heading(quoted, headings):
    q = normalise(quoted)
    for h in headings:
        for candidate in (h, h[4:] if h.startswith("the ") else h):
            if candidate == q or (candidate.startswith(q) and not candidate[len(q)].isalnum()):
                return True
    return False


def check_prose_references(files):
    this = os.path.relpath(os.path.abspath(__file__), ROOT)
    for name in files:
        if not name.endswith(PROSE_FILE_SUFFIXES) or name == this or "/Fixtures/" in name:
            continue
        path = os.path.join(ROOT, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except UnicodeDecodeError:
            continue
        # One line of text, comment markers taken off each line, so a reference may wrap.
        joined, starts = "", []
        for line in lines:
            starts.append(len(joined))
            joined += COMMENT_LEAD.sub("", line, count=1) + " "

        def line_of(offset):
            lo, hi = 0, len(starts) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if starts[mid] <= offset:
                    lo = mid
                else:
                    hi = mid - 1
            return lo + 1

        named = set()
        for m in PROSE_REF.finditer(joined):
            named.add(m.start(1))
            doc, quoted = m.group(1), m.group(2)
            where = f"{name}:{line_of(m.start(1))}: {doc}, \"{quoted}\""
            dest = os.path.join(ROOT, doc)
            if not os.path.isfile(dest):
                fail(f"{where}: no file {doc}")
            elif not names_heading(quoted, heading_texts(dest)):
                fail(f"{where}: no heading \"{quoted}\" in {doc}")
            else:
                ok()
        for m in PROSE_PATH.finditer(joined):
            if m.start(1) in named:
                continue
            if os.path.isfile(os.path.join(ROOT, m.group(1))):
                ok()
            else:
                fail(f"{name}:{line_of(m.start(1))}: {m.group(1)}: no such file")


def check_swift_lines():
    for top in ("Sources", "Tests"):
        for folder, dirs, names in os.walk(os.path.join(ROOT, top)):
            dirs.sort()
            for name in sorted(names):
                if not name.endswith(".swift"):
                    continue
                path = os.path.join(folder, name)
                bad = 0
                with open(path, encoding="utf-8") as f:
                    for number, line in enumerate(f, start=1):
                        length = len(line.rstrip("\n").rstrip("\r"))
                        if length > MAX_SWIFT_LINE:
                            bad += 1
                            fail(f"{rel(path)}:{number}: {length} characters (at most {MAX_SWIFT_LINE})")
                if bad == 0:
                    ok()


NO_MPI_TARGETS = ("KDCore", "KDData", "KDModels", "KDLosses", "KDTestSupport", "KDTensor", "KDFormats")
MPI_IMPORT = re.compile(r"^\s*(?:@testable\s+|@_exported\s+)?import\s+(CMPI|KDComm)\b", re.M)


def check_module_edges():
    for target in NO_MPI_TARGETS:
        bad = 0
        for folder, dirs, names in os.walk(os.path.join(ROOT, "Sources", target)):
            dirs.sort()
            for name in sorted(n for n in names if n.endswith(".swift")):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    for m in MPI_IMPORT.finditer(f.read()):
                        bad += 1
                        fail(f"{rel(path)}: imports {m.group(1)}, but {target} must not depend on MPI "
                             "(code against KDCore's Communicator)")
        if bad == 0:
            ok()


def check_tracked_build_products(files):
    bad = [p for p in files if "__pycache__/" in p or p.endswith((".pyc", ".pyo"))]
    for p in bad:
        fail(f"{p}: compiled Python is tracked by git (git rm --cached it; .gitignore covers it)")
    if not bad:
        ok()


def main():
    files = tracked_files()
    check_links()
    check_prose_references(files)
    check_swift_lines()
    check_tracked_build_products(files)
    check_module_edges()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
