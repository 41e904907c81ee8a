#!/usr/bin/python3
"""promcheck.py - a checker of the Prometheus text exposition format (0.0.4),
strict enough for what the node_exporter textfile collector accepts.

    promcheck.py FILE      check FILE; print the samples as JSON
                           {"name{labels}": value} on stdout; exit 1 with
                           the problems on stderr if it is not valid
    promcheck.py --self-test
                           check that the checker rejects broken input

Rules checked: every line is a HELP, a TYPE, another comment or a sample;
HELP and TYPE appear at most once per metric name and before its first
sample; TYPE is a known type; every sample has a TYPE; counter samples end
in _total; the lines of one metric are one contiguous group; metric and
label names are valid; label values are quoted with valid escapes; no label
appears twice in a sample; values parse as numbers; there are no timestamps
(the textfile collector refuses them); no series appears twice; the file
ends with a newline.
"""
import json
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_labels(s, pos, errors, lineno):
    """Parse '{a="x",b="y"}' starting at s[pos] == '{'; return (labels, pos)."""
    labels = {}
    pos += 1
    while True:
        if pos < len(s) and s[pos] == "}":
            return labels, pos + 1
        m = LABEL.match(s, pos)
        if not m:
            errors.append("line %d: bad label name at column %d" % (lineno, pos + 1))
            return None, pos
        name = m.group(0)
        pos = m.end()
        if s[pos:pos + 2] != '="':
            errors.append("line %d: label %s needs =\"value\"" % (lineno, name))
            return None, pos
        pos += 2
        value = []
        while True:
            if pos >= len(s):
                errors.append("line %d: unterminated label value" % lineno)
                return None, pos
            ch = s[pos]
            if ch == "\\":
                nxt = s[pos + 1:pos + 2]
                if nxt not in ("\\", '"', "n"):
                    errors.append("line %d: bad escape \\%s in label value" % (lineno, nxt))
                    return None, pos
                value.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif ch == '"':
                pos += 1
                break
            else:
                value.append(ch)
                pos += 1
        if name in labels:
            errors.append("line %d: label %s appears twice" % (lineno, name))
        labels[name] = "".join(value)
        if pos < len(s) and s[pos] == ",":
            pos += 1
        elif pos < len(s) and s[pos] == "}":
            continue
        else:
            errors.append("line %d: expected , or } after label %s" % (lineno, name))
            return None, pos


def family_of(name, types):
    """The metric a sample belongs to (histogram/summary samples have suffixes)."""
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
            return name[: -len(suffix)]
    return name


def check(text):
    errors = []
    helps, types = {}, {}
    series = {}
    seen_families = []  # in order of first appearance, for contiguity
    closed = set()
    current = None
    if text and not text.endswith("\n"):
        errors.append("the file does not end with a newline")
    for lineno, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not NAME.fullmatch(parts[2]):
                    errors.append("line %d: %s without a valid metric name" % (lineno, parts[1]))
                    continue
                name = parts[2]
                if name in closed or (current is not None and current != name and name in (helps.keys() | types.keys())):
                    errors.append("line %d: %s for %s outside its group" % (lineno, parts[1], name))
                if current is not None and current != name:
                    closed.add(current)
                current = name
                if parts[1] == "HELP":
                    if name in helps:
                        errors.append("line %d: second HELP for %s" % (lineno, name))
                    helps[name] = parts[3] if len(parts) > 3 else ""
                else:
                    if name in types:
                        errors.append("line %d: second TYPE for %s" % (lineno, name))
                    if name in series_names(series):
                        errors.append("line %d: TYPE for %s after its samples" % (lineno, name))
                    t = parts[3].strip() if len(parts) > 3 else ""
                    if t not in TYPES:
                        errors.append("line %d: unknown type '%s'" % (lineno, t))
                    types[name] = t
            continue
        m = NAME.match(line)
        if not m:
            errors.append("line %d: not a sample: %r" % (lineno, line))
            continue
        name = m.group(0)
        pos = m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = parse_labels(line, pos, errors, lineno)
            if labels is None:
                continue
        rest = line[pos:]
        if not rest.startswith(" "):
            errors.append("line %d: no space before the value" % lineno)
            continue
        fields = rest.split()
        if len(fields) != 1:
            errors.append("line %d: expected exactly one value (no timestamp), got %r" % (lineno, fields))
            continue
        try:
            value = float(fields[0])
        except ValueError:
            errors.append("line %d: value %r is not a number" % (lineno, fields[0]))
            continue
        fam = family_of(name, types)
        if fam not in types:
            errors.append("line %d: sample of %s has no TYPE before it" % (lineno, name))
        if fam not in helps:
            errors.append("line %d: sample of %s has no HELP before it" % (lineno, name))
        if fam in closed or (current is not None and current != fam):
            errors.append("line %d: sample of %s outside its group" % (lineno, name))
        if current is not None and current != fam:
            closed.add(current)
        current = fam
        if types.get(fam) == "counter":
            if not name.endswith("_total"):
                errors.append("line %d: counter %s does not end in _total" % (lineno, name))
            if value < 0:
                errors.append("line %d: counter %s is negative" % (lineno, name))
        key = name + "{" + ",".join('%s="%s"' % kv for kv in sorted(labels.items())) + "}"
        if key in series:
            errors.append("line %d: duplicate series %s" % (lineno, key))
        series[key] = value
        if fam not in seen_families:
            seen_families.append(fam)
    for name in types:
        if name not in helps:
            errors.append("TYPE without HELP for %s" % name)
    return errors, series


def series_names(series):
    return {k.split("{", 1)[0] for k in series}


BAD = {
    "no TYPE": "# HELP a_total x\na_total 1\n",
    "no HELP": "# TYPE a_total counter\na_total 1\n",
    "counter without _total": "# HELP a x\n# TYPE a counter\na 1\n",
    "value not a number": "# HELP a x\n# TYPE a gauge\na one\n",
    "timestamp": "# HELP a x\n# TYPE a gauge\na 1 1700000000000\n",
    "duplicate series": "# HELP a x\n# TYPE a gauge\na{p=\"1\"} 1\na{p=\"1\"} 2\n",
    "TYPE after samples": "# HELP a x\na 1\n# TYPE a gauge\n",
    "second TYPE": "# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n",
    "split group": "# HELP a x\n# TYPE a gauge\na{p=\"1\"} 1\n# HELP b x\n# TYPE b gauge\nb 1\na{p=\"2\"} 1\n",
    "bad escape": "# HELP a x\n# TYPE a gauge\na{p=\"\\q\"} 1\n",
    "unterminated label": "# HELP a x\n# TYPE a gauge\na{p=\"1} 1\n",
    "bad metric name": "# HELP a x\n# TYPE a gauge\n1a 1\n",
    "unknown type": "# HELP a x\n# TYPE a meter\na 1\n",
    "no final newline": "# HELP a x\n# TYPE a gauge\na 1",
    "label twice": "# HELP a x\n# TYPE a gauge\na{p=\"1\",p=\"2\"} 1\n",
}
GOOD = (
    "# HELP a_total x\n# TYPE a_total counter\na_total{path=\"/x\\\\y\\\"z\\n\"} 3\n"
    "# HELP b x\n# TYPE b gauge\nb{p=\"1\"} 0.5\nb{p=\"2\"} -1e-07\n"
)


def self_test():
    ok = True
    errors, _ = check(GOOD)
    if errors:
        print("self-test: valid input rejected: %s" % errors, file=sys.stderr)
        ok = False
    for what, text in BAD.items():
        errors, _ = check(text)
        if not errors:
            print("self-test: accepted input with %s" % what, file=sys.stderr)
            ok = False
    return 0 if ok else 1


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--self-test":
        return self_test()
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    errors, series = check(text)
    if not series:
        errors.append("no samples at all")
    for e in errors:
        print("promcheck: %s" % e, file=sys.stderr)
    if errors:
        return 1
    json.dump(series, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
