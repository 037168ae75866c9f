#!/usr/bin/env python3
"""status_check.py -- strict checks of /_status output.

  status_check.py prom PROM_FILE
      PROM_FILE must be valid Prometheus text exposition format 0.0.4
      (https://prometheus.io/docs/instrumenting/exposition_formats/) and
      follow the naming practices
      (https://prometheus.io/docs/practices/naming/); see check_prom().

  status_check.py readme README JSON_FILE PROM_FILE
      The prom checks, JSON_FILE must be one JSON object, and the README's
      status table (the Markdown table whose header starts with
      "| JSON key | Prometheus |") must document exactly what the two
      outputs hold: every JSON key, every Prometheus family, sample name
      and label, and each family's type.

Prints one line per problem and exits 1 when there is any, else 0.  No
third-party module: python3 alone.
"""
import json
import math
import re
import sys

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
# Units the naming practices say to convert to base units.
NON_BASE_UNITS = ("ms", "msec", "millis", "milliseconds", "us", "usec",
                  "microseconds", "ns", "nanoseconds", "minutes", "hours",
                  "days", "kb", "kib", "mb", "mib", "gb", "gib",
                  "kilobytes", "megabytes", "gigabytes", "bits", "percent")
PREFIX = "waituntil_"


class Problems(list):
    def add(self, lineno, msg):
        self.append("line %d: %s" % (lineno, msg) if lineno else msg)


def parse_float(s):
    """A sample value as Go's strconv.ParseFloat reads it (what Prometheus
    uses), or None."""
    if s in ("+Inf", "Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", s):
        return None
    return float(s)


def parse_labels(text, pos, lineno, probs):
    """Labels starting after '{' at text[pos]; returns (dict, pos after
    '}') or (None, _) on error."""
    labels = {}
    while True:
        if text.startswith("}", pos):
            return labels, pos + 1
        m = LABEL_RE.match(text, pos)
        if not m:
            probs.add(lineno, "bad label name at column %d" % (pos + 1))
            return None, pos
        name = m.group(0)
        pos = m.end()
        if name.startswith("__"):
            probs.add(lineno, "label name %s is reserved (__)" % name)
        if not text.startswith('="', pos):
            probs.add(lineno, "expected =\" after label %s" % name)
            return None, pos
        pos += 2
        val = []
        while True:
            if pos >= len(text):
                probs.add(lineno, "unterminated value of label %s" % name)
                return None, pos
            c = text[pos]
            if c == "\\":
                nxt = text[pos + 1:pos + 2]
                if nxt not in ("\\", '"', "n"):
                    probs.add(lineno, "bad escape \\%s in label %s"
                              % (nxt, name))
                    return None, pos
                val.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                pos += 2
            elif c == '"':
                pos += 1
                break
            else:
                val.append(c)
                pos += 1
        if name in labels:
            probs.add(lineno, "label %s twice" % name)
        labels[name] = "".join(val)
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("}", pos):
            probs.add(lineno, "expected , or } after label %s" % name)
            return None, pos


def family_of(sample, types):
    """The family a sample name belongs to: itself, or a histogram's /
    summary's name for its _bucket/_sum/_count samples."""
    for suf in ("_bucket", "_sum", "_count"):
        if sample.endswith(suf):
            base = sample[:-len(suf)]
            if types.get(base) == "histogram" or \
                    (types.get(base) == "summary" and suf != "_bucket"):
                return base
    return sample


def check_prom(text, probs):
    """Parse and check; returns (types, helps, samples) where samples is
    a list of (name, labels dict, value, lineno)."""
    types, helps, samples = {}, {}, []
    seen_series = set()
    done_families = set()   # families whose group has ended
    current = None          # family of the last line
    if not text.endswith("\n"):
        probs.add(0, "the text does not end with a newline")
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            probs.add(lineno, "empty line")
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[0] == "#" and \
                    parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME_RE.fullmatch(name):
                    probs.add(lineno, "bad metric name %r" % name)
                    continue
                if name in done_families:
                    probs.add(lineno, "%s for %s after its samples ended"
                              % (parts[1], name))
                if current is not None and current != name:
                    done_families.add(current)
                current = name
                if parts[1] == "HELP":
                    if name in helps:
                        probs.add(lineno, "second HELP for %s" % name)
                    doc = parts[3] if len(parts) > 3 else ""
                    if not re.fullmatch(r"(?:[^\\]|\\[\\n])*", doc):
                        probs.add(lineno, "bad escape in HELP of %s" % name)
                    if doc.strip() == "":
                        probs.add(lineno, "empty HELP for %s" % name)
                    helps[name] = doc
                else:
                    if len(parts) != 4 or parts[3] not in TYPES:
                        probs.add(lineno, "bad TYPE line")
                        continue
                    if name in types:
                        probs.add(lineno, "second TYPE for %s" % name)
                    if any(family_of(s[0], {name: parts[3]}) == name
                           for s in samples):
                        probs.add(lineno, "TYPE for %s after its samples"
                                  % name)
                    types[name] = parts[3]
            elif not line.startswith("# ") and line != "#":
                probs.add(lineno, "comment without a space after #")
            continue
        m = NAME_RE.match(line)
        if not m:
            probs.add(lineno, "bad sample line")
            continue
        name = m.group(0)
        pos = m.end()
        labels = {}
        if line.startswith("{", pos):
            labels, pos = parse_labels(line, pos + 1, lineno, probs)
            if labels is None:
                continue
        rest = line[pos:]
        if not rest.startswith(" "):
            probs.add(lineno, "expected a space before the value")
            continue
        fields = rest[1:].split(" ")
        if len(fields) not in (1, 2) or fields[0] == "":
            probs.add(lineno, "expected VALUE [TIMESTAMP]")
            continue
        value = parse_float(fields[0])
        if value is None:
            probs.add(lineno, "bad value %r" % fields[0])
            continue
        if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
            probs.add(lineno, "bad timestamp %r" % fields[1])
        fam = family_of(name, types)
        if fam not in types:
            probs.add(lineno, "sample %s without a TYPE line" % name)
        if fam not in helps:
            probs.add(lineno, "sample %s without a HELP line" % name)
        if fam in done_families:
            probs.add(lineno, "samples of %s are not one group" % fam)
        if current is not None and current != fam:
            done_families.add(current)
        current = fam
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            probs.add(lineno, "series %s%s twice" % (name, labels))
        seen_series.add(key)
        samples.append((name, labels, value, lineno))

    check_conventions(types, samples, probs)
    return types, helps, samples


def check_conventions(types, samples, probs):
    for fam, typ in sorted(types.items()):
        own = [s for s in samples if family_of(s[0], types) == fam]
        if not fam.startswith(PREFIX):
            probs.add(0, "%s: no %s prefix" % (fam, PREFIX))
        if fam != fam.lower():
            probs.add(0, "%s: not snake_case" % fam)
        words = fam.split("_")
        for unit in NON_BASE_UNITS:
            if unit in words:
                probs.add(0, "%s: unit %s is not a base unit" % (fam, unit))
        if typ == "untyped":
            probs.add(0, "%s: untyped" % fam)
        if typ == "counter":
            if not fam.endswith("_total"):
                probs.add(0, "counter %s does not end in _total" % fam)
            for s in own:
                if s[2] < 0 or math.isnan(s[2]):
                    probs.add(s[3], "counter %s is negative or NaN" % fam)
        elif fam.endswith("_total"):
            probs.add(0, "%s %s ends in _total (only counters do)"
                      % (typ, fam))
        if typ != "histogram":
            for suf in ("_bucket", "_sum", "_count"):
                if fam.endswith(suf):
                    probs.add(0, "%s %s ends in %s (reserved for histograms "
                              "and summaries)" % (typ, fam, suf))
        if fam.endswith("_info"):
            if typ != "gauge":
                probs.add(0, "info metric %s is not a gauge" % fam)
            for s in own:
                if s[2] != 1:
                    probs.add(s[3], "info metric %s is not 1" % fam)
        if not own:
            probs.add(0, "family %s has no sample" % fam)
        for s in own:
            if "le" in s[1] and not s[0].endswith("_bucket"):
                probs.add(s[3], "label le outside a histogram bucket")
        if typ == "histogram":
            check_histogram(fam, own, probs)


def check_histogram(fam, own, probs):
    groups = {}
    for name, labels, value, lineno in own:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None,
                                     "count": None})
        if name == fam + "_bucket":
            if "le" not in labels:
                probs.add(lineno, "bucket of %s without le" % fam)
                continue
            le = parse_float(labels["le"])
            if le is None:
                probs.add(lineno, "bad le %r" % labels["le"])
                continue
            g["buckets"].append((le, value, lineno))
        elif name == fam + "_sum":
            g["sum"] = value
        elif name == fam + "_count":
            g["count"] = value
        else:
            probs.add(lineno, "%s is no sample of histogram %s" % (name, fam))
    for rest, g in groups.items():
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            probs.add(0, "histogram %s%s: no le=\"+Inf\" bucket last"
                      % (fam, dict(rest)))
        for (le0, v0, _), (le1, v1, ln) in zip(b, b[1:]):
            if le1 <= le0:
                probs.add(ln, "histogram %s: le not ascending" % fam)
            if v1 < v0:
                probs.add(ln, "histogram %s: buckets not cumulative" % fam)
        if g["sum"] is None:
            probs.add(0, "histogram %s: no _sum" % fam)
        if g["count"] is None:
            probs.add(0, "histogram %s: no _count" % fam)
        elif b and b[-1][0] == math.inf and b[-1][1] != g["count"]:
            probs.add(0, "histogram %s: _count %g != +Inf bucket %g"
                      % (fam, g["count"], b[-1][1]))


def readme_table(path, probs):
    """Rows (json key or None, prom text or None, type text) of the
    status table."""
    rows, inside = [], False
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for lineno, line in enumerate(lines, 1):
        if not inside:
            if re.match(r"\|\s*JSON key\s*\|\s*Prometheus\s*\|", line):
                inside = True
                header = lineno
            continue
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if lineno == header + 1:
            continue  # |---|---|
        if len(cells) < 4:
            probs.add(0, "README:%d: a status row needs 4 cells" % lineno)
            continue

        def code(c):
            if c in ("—", "-", ""):
                return None
            m = re.fullmatch(r"`([^`]+)`", c)
            if not m:
                probs.add(0, "README:%d: %r is not one `code` cell"
                          % (lineno, c))
                return None
            return m.group(1)
        rows.append((code(cells[0]), code(cells[1]), cells[2], lineno))
    if not inside:
        probs.add(0, "README: no table with header | JSON key | Prometheus |")
    return rows


def check_readme(readme, json_text, prom_text, probs):
    types, _, samples = check_prom(prom_text, probs)
    try:
        obj = json.loads(json_text)
    except ValueError as e:
        probs.add(0, "JSON does not parse: %s" % e)
        return
    if not isinstance(obj, dict):
        probs.add(0, "JSON is not an object")
        return
    rows = readme_table(readme, probs)

    documented = [r[0] for r in rows if r[0] is not None]
    for k in sorted(set(documented)):
        if documented.count(k) > 1:
            probs.add(0, "README: JSON key %s in two rows" % k)
    for k in sorted(set(obj) - set(documented)):
        probs.add(0, "JSON key %s is not in the README table" % k)
    for k in sorted(set(documented) - set(obj)):
        probs.add(0, "README names JSON key %s; the output has none" % k)

    by_family = {}   # family -> list of (selector label, value or None)
    for key, prom, typ, lineno in rows:
        if prom is None:
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)'
                         r'(?:\{([a-zA-Z_][a-zA-Z0-9_]*)(?:="([^"]*)")?\})?',
                         prom)
        if not m:
            probs.add(0, "README:%d: cannot read %r" % (lineno, prom))
            continue
        name, lname, lval = m.groups()
        fam = family_of(name, types)
        match = [s for s in samples if s[0] == name and
                 (lname is None or lname in s[1]) and
                 (lval is None or s[1].get(lname) == lval)]
        if not match:
            probs.add(0, "README:%d: names %s; the output has no such sample"
                      % (lineno, prom))
            continue
        if typ != types.get(fam):
            probs.add(0, "README:%d: %s is a %s, the README says %r"
                      % (lineno, fam, types.get(fam), typ))
        by_family.setdefault(fam, []).append((lname, lval))

    for fam in sorted(types):
        sel = by_family.get(fam)
        if sel is None:
            probs.add(0, "Prometheus family %s is not in the README table"
                      % fam)
            continue
        named = {l for l, _ in sel if l is not None}
        exact = [(l, v) for l, v in sel if v is not None]
        for name, labels, _, lineno in samples:
            if family_of(name, types) != fam:
                continue
            for l in labels:
                if l != "le" and l not in named:
                    probs.add(lineno, "label %s of %s is not in the README"
                              % (l, fam))
            if exact and not any(labels.get(l) == v for l, v in exact):
                probs.add(lineno, "sample %s%s matches no README row"
                          % (name, labels))


def read_utf8(path, probs):
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        probs.add(0, "%s: not UTF-8 (%s)" % (path, e))
        return data.decode("utf-8", "replace")


def main(argv):
    probs = Problems()
    if len(argv) == 3 and argv[1] == "prom":
        check_prom(read_utf8(argv[2], probs), probs)
    elif len(argv) == 5 and argv[1] == "readme":
        js = read_utf8(argv[3], probs)
        pr = read_utf8(argv[4], probs)
        check_readme(argv[2], js, pr, probs)
    else:
        sys.stderr.write(__doc__)
        return 2
    for p in probs:
        print(p)
    return 1 if probs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
