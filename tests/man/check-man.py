#!/usr/bin/python3
"""Check that the man pages agree with the tools, and render cleanly.

    check-man.py BIN_DIR MAN_DIR SOURCE.md...

For each source docs/man/NAME.SECTION.md, with TAP output:
- the options that `BIN_DIR/NAME --help` mentions are exactly the options
  the page defines (the terms of its OPTIONS and COMMANDS sections), so an
  option added to a tool without its page, or the reverse, fails here;
- for lmc, the commands of --help are exactly the page's COMMANDS;
- MAN_DIR/NAME.SECTION is what docs/man/mkman.py makes of the source now,
  so the installed page is never an older one;
- man renders the page with no warning from groff (the check lintian makes
  of packaged pages), and the rendered text names every option.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "docs", "man"))
import mkman  # noqa: E402

# An option is a dash or two followed by a letter, not inside a word
# ("read-only" holds none).  The lone "--" that ends options is looked for
# separately, as a term of its own.
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][A-Za-z0-9-]*)")


def help_text(bin_dir, name):
    r = subprocess.run([os.path.join(bin_dir, name), "--help"], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        raise SystemExit("%s --help exited %d: %s" % (name, r.returncode, r.stderr))
    return r.stdout


def help_options(text):
    opts = set(OPTION.findall(text))
    if re.search(r"^\s+--\s", text, re.M):
        opts.add("--")
    return opts


def help_commands(text):
    """The commands of lmc --help: the first word of each line between
    "Commands" and "Options:", at the indentation of the first one."""
    section = text.split("Commands", 1)[1].split("\nOptions:", 1)[0]
    return set(re.findall(r"^  ([a-z][a-z-]*)(?= |$)", section, re.M))


def page_terms(src):
    """{section name: [definition terms]} of a page source."""
    terms, section = {}, None
    lines = src.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("## "):
            section = line[3:].strip().upper()
        elif i + 1 < len(lines) and lines[i + 1].startswith(":   ") and section:
            terms.setdefault(section, []).append(line.strip())
    return terms


def term_options(term):
    literal = " ".join(re.findall(r"`([^`]*)`", term))
    opts = set(OPTION.findall(literal))
    if re.search(r"(^| )--( |$)", literal):
        opts.add("--")
    return opts


def main():
    bin_dir, man_dir, sources = sys.argv[1], sys.argv[2], sys.argv[3:]
    version = re.search(r'#define LMC_VERSION_STRING "([^"]+)"',
                        open(os.path.join(TOP, "include", "lmc.h"), encoding="ascii").read()).group(1)
    results = []

    def check(ok, what, detail=""):
        results.append((ok, what, detail))

    for source in sources:
        page = os.path.basename(source)[:-3]
        name = page.rsplit(".", 1)[0]
        src = open(source, encoding="utf-8").read()
        text = help_text(bin_dir, name)
        terms = page_terms(src)

        man_opts = set()
        for section in ("OPTIONS", "COMMANDS"):
            for t in terms.get(section, []):
                man_opts |= term_options(t)
        hopts = help_options(text)
        check(hopts == man_opts, "%s: --help and %s list the same options" % (name, page),
              "only in --help: %s; only in the page: %s"
              % (sorted(hopts - man_opts), sorted(man_opts - hopts)))

        if "Commands" in text:
            hcmds = help_commands(text)
            mcmds = {re.match(r"`([^`]+)`", t).group(1) for t in terms.get("COMMANDS", [])}
            check(hcmds == mcmds, "%s: --help and %s list the same commands" % (name, page),
                  "only in --help: %s; only in the page: %s"
                  % (sorted(hcmds - mcmds), sorted(mcmds - hcmds)))

        built = os.path.join(man_dir, page)
        current = os.path.exists(built) and open(built, encoding="utf-8").read() == \
            mkman.convert(src, version)
        check(current, "%s is generated from the current %s" % (built, source))

        env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80", MAN_KEEP_FORMATTING="")
        r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", built],
                           capture_output=True, text=True, env=env, check=False)
        check(r.returncode == 0 and r.stderr == "", "man renders %s without a warning" % page,
              r.stderr.strip())
        r = subprocess.run(["man", "-l", built], capture_output=True, text=True,
                           env=dict(env, MANWIDTH="200"), check=False)
        rendered = set(OPTION.findall(r.stdout))
        missing = (man_opts - {"--"}) - rendered
        check(not missing, "the rendered %s shows every option as typed" % page,
              "missing: %s" % sorted(missing))

    print("1..%d" % len(results))
    failed = 0
    for n, (ok, what, detail) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", n, what))
        if not ok:
            failed += 1
            if detail:
                print("# " + detail)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
