#!/usr/bin/env python3
"""Generates src/llm/unicode_tables.c, the character tables of the WordPiece tokenizer.

The BERT tokenizer of all-MiniLM-L6-v2 (Hugging Face `tokenizers`' BertNormalizer and
BertPreTokenizer) asks five questions of every character: is it dropped as a control
character or turned into a space (clean_text), is it a CJK ideograph to be surrounded by
spaces, what is its canonical decomposition (NFD) and is it a nonspacing mark (strip
accents), what is its lowercase, and is it whitespace or punctuation to split on.

The tables are computed from Python's unicodedata (its Unicode version is written into the
generated file). Hugging Face's Rust code does not answer all five from one Unicode
version: its category and decomposition tables are older than Python's, its lowercase is
Rust's (newer), and its CJK ranges are its own. So, unless --no-hf is given, this script
also asks the `tokenizers` library about every code point, one step at a time, and where
the two disagree it takes the library's answer; the generated file lists every such code
point. The result is then checked again, code point by code point, against the library.

usage: scripts/gen-unicode-tables.py [--no-hf] [--out src/llm/unicode_tables.c]
(needs `pip install tokenizers` unless --no-hf)
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import unicodedata as ud

# Flags of fn_uc_range (see src/llm/unicode_tables.h).
CLEAN_DROP = 1 << 0  # removed by clean_text (control and format characters)
CLEAN_SPACE = 1 << 1  # turned into ' ' by clean_text
CJK = 1 << 2  # surrounded by spaces by handle_chinese_chars
MN = 1 << 3  # nonspacing mark, removed when stripping accents
HAS_NFD = 1 << 4  # has an entry in the decomposition table
HAS_LOWER = 1 << 5  # has an entry in the lowercase table
PRE_SPACE = 1 << 6  # the pre-tokenizer splits on it and drops it
PRE_PUNCT = 1 << 7  # the pre-tokenizer makes it a word of its own
FLAG_NAMES = [
    (CLEAN_DROP, "FN_UC_CLEAN_DROP"),
    (CLEAN_SPACE, "FN_UC_CLEAN_SPACE"),
    (CJK, "FN_UC_CJK"),
    (MN, "FN_UC_MN"),
    (HAS_NFD, "FN_UC_HAS_NFD"),
    (HAS_LOWER, "FN_UC_HAS_LOWER"),
    (PRE_SPACE, "FN_UC_PRE_SPACE"),
    (PRE_PUNCT, "FN_UC_PRE_PUNCT"),
]

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3  # decomposed by arithmetic in tokenizer.c
SURROGATES = range(0xD800, 0xE000)

# BERT's "Chinese character" ranges as Hugging Face's Rust port writes them. Google's
# original BERT starts the fifth range at 0x2B820; the Rust port has 0x2B920.
CJK_RANGES = [
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
]


def code_points():
    return (cp for cp in range(0x110000) if cp not in SURROGATES)


def is_space(c):
    # Rust's char::is_whitespace (the White_Space property). Python's isspace() is
    # White_Space plus the four information separators U+001C..U+001F.
    return c.isspace() and not 0x1C <= ord(c) <= 0x1F


def is_control(c):
    # Cc, Cf, Co, Cs, but not Cn: unassigned code points are kept.
    return c not in "\t\n\r" and ud.category(c) in ("Cc", "Cf", "Co", "Cs")


def is_punct(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return ud.category(c).startswith("P")


def nfd(c):
    if HANGUL_FIRST <= ord(c) <= HANGUL_LAST:
        return None
    d = ud.normalize("NFD", c)
    return d if d != c else None


class Tables:
    def __init__(self):
        self.flags = {}  # cp -> flags, only non-zero
        self.ccc = {}  # cp -> canonical combining class, only non-zero
        self.decomp = {}  # cp -> str
        self.lower = {}  # cp -> str
        for cp in code_points():
            c = chr(cp)
            f = 0
            if cp == 0 or cp == 0xFFFD or is_control(c):
                f |= CLEAN_DROP
            elif c in "\t\n\r" or is_space(c):
                f |= CLEAN_SPACE
            if any(lo <= cp <= hi for lo, hi in CJK_RANGES):
                f |= CJK
            if ud.category(c) == "Mn":
                f |= MN
            if is_space(c):
                f |= PRE_SPACE
            elif is_punct(c):
                f |= PRE_PUNCT
            if f:
                self.flags[cp] = f
            if ud.combining(c):
                self.ccc[cp] = ud.combining(c)
            d = nfd(c)
            if d is not None:
                self.decomp[cp] = d
            low = c.lower()
            if low != c:
                self.lower[cp] = low

    def has(self, cp, flag):
        return bool(self.flags.get(cp, 0) & flag)

    def set(self, cp, flag, on):
        f = self.flags.get(cp, 0)
        f = (f | flag) if on else (f & ~flag)
        if f:
            self.flags[cp] = f
        else:
            self.flags.pop(cp, None)

    # What tokenizer.c computes for one code point at each step.
    def clean(self, c):
        if self.has(ord(c), CLEAN_DROP):
            return ""
        if self.has(ord(c), CLEAN_SPACE):
            return " "
        return c

    def chinese(self, c):
        return " %s " % c if self.has(ord(c), CJK) else c

    def strip(self, c):
        cp = ord(c)
        if HANGUL_FIRST <= cp <= HANGUL_LAST:
            s = cp - HANGUL_FIRST
            out = chr(0x1100 + s // 588) + chr(0x1161 + (s % 588) // 28)
            if s % 28:
                out += chr(0x11A7 + s % 28)
            return out
        d = self.decomp.get(cp, c)
        return "".join(x for x in d if not self.has(ord(x), MN))

    def lowercase(self, c):
        return self.lower.get(ord(c), c)

    def pretok(self, c):
        if self.has(ord(c), PRE_SPACE):
            return "space"
        if self.has(ord(c), PRE_PUNCT):
            return "punct"
        return "word"


class HF:
    """The tokenizers library's answer for one code point at each step."""

    def __init__(self):
        from tokenizers import normalizers, pre_tokenizers

        def bert(**kw):
            args = dict(clean_text=False, handle_chinese_chars=False, strip_accents=False,
                        lowercase=False)
            args.update(kw)
            return normalizers.BertNormalizer(**args)

        self.n_clean = bert(clean_text=True)
        self.n_chinese = bert(handle_chinese_chars=True)
        self.n_strip = bert(strip_accents=True)
        self.n_lower = bert(lowercase=True)
        self.pre = pre_tokenizers.BertPreTokenizer()

    def clean(self, c):
        return self.n_clean.normalize_str(c)

    def chinese(self, c):
        return self.n_chinese.normalize_str(c)

    def strip(self, c):
        return self.n_strip.normalize_str(c)

    def lowercase(self, c):
        return self.n_lower.normalize_str(c)

    def pretok(self, c):
        parts = [p for p, _ in self.pre.pre_tokenize_str("a" + c + "a")]
        if parts == ["a", "a"]:
            return "space"
        if parts == ["a", c, "a"]:
            return "punct"
        if parts == ["a" + c + "a"]:
            return "word"
        raise SystemExit("gen-unicode-tables: unexpected pre-tokenization of U+%04X: %r"
                         % (ord(c), parts))


STEPS = ["clean", "chinese", "strip", "lowercase", "pretok"]


def adjust(t, hf):
    """Makes t agree with hf at every code point; returns {step: [cp, ...]} changed."""
    changed = {s: [] for s in STEPS}
    for cp in code_points():
        c = chr(cp)
        for step in STEPS:
            want = getattr(hf, step)(c)
            if getattr(t, step)(c) == want:
                continue
            changed[step].append(cp)
            if step == "clean":
                t.set(cp, CLEAN_DROP, want == "")
                t.set(cp, CLEAN_SPACE, want == " " and c != " ")
            elif step == "chinese":
                t.set(cp, CJK, want != c)
            elif step == "strip":
                t.decomp.pop(cp, None)
                if want == "":
                    t.set(cp, MN, True)
                elif want == c:
                    t.set(cp, MN, False)
                else:
                    t.set(cp, MN, False)
                    t.decomp[cp] = want
            elif step == "lowercase":
                if want == c:
                    t.lower.pop(cp, None)
                else:
                    t.lower[cp] = want
            elif step == "pretok":
                t.set(cp, PRE_SPACE, want == "space")
                t.set(cp, PRE_PUNCT, want == "punct")
    # A changed mark can change the decompositions that contain it: check all again.
    for cp in code_points():
        c = chr(cp)
        for step in STEPS:
            if getattr(t, step)(c) != getattr(hf, step)(c):
                raise SystemExit("gen-unicode-tables: U+%04X still differs at step %s" % (cp, step))
    # Canonical reordering happens on the decomposed text before marks are removed;
    # tokenizer.c does it too, which needs the library to do it.
    probe = "a\U0001D16D\U0001D165"
    if hf.strip(probe) != "a\U0001D165\U0001D16D":
        raise SystemExit("gen-unicode-tables: the library no longer reorders combining "
                         "marks (%r); tokenizer.c must change" % hf.strip(probe))
    return changed


def ranges_of(cps):
    out = []
    for cp in sorted(cps):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def flag_expr(f):
    names = [n for bit, n in FLAG_NAMES if f & bit]
    return " | ".join(names) if names else "0"


def emit(t, changed, hf_version, out_path):
    for cp in t.decomp:
        t.set(cp, HAS_NFD, True)
    for cp in t.lower:
        t.set(cp, HAS_LOWER, True)
    # Runs of code points with the same flags and combining class.
    ranges = []
    keys = sorted(set(t.flags) | set(t.ccc))
    for cp in keys:
        v = (t.flags.get(cp, 0), t.ccc.get(cp, 0))
        if ranges and ranges[-1][1] == cp - 1 and ranges[-1][2] == v:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp, v])

    def pool_table(name, mapping):
        entries, pool = [], []
        for cp in sorted(mapping):
            seq = [ord(x) for x in mapping[cp]]
            assert len(seq) <= 4
            entries.append((cp, len(pool), len(seq)))
            pool.extend(seq)
        assert len(pool) < 65536
        lines = ["const fn_uc_map fn_uc_%s[] = {" % name]
        row = []
        for cp, off, n in entries:
            row.append("{0x%X, %d, %d}," % (cp, off, n))
            if len(row) == 4:
                lines.append("    " + " ".join(row))
                row = []
        if row:
            lines.append("    " + " ".join(row))
        lines.append("};")
        lines.append("const size_t fn_uc_%s_count = %d;" % (name, len(entries)))
        lines.append("const uint32_t fn_uc_%s_pool[] = {" % name)
        for i in range(0, len(pool), 8):
            lines.append("    " + " ".join("0x%X," % x for x in pool[i:i + 8]))
        lines.append("};")
        return lines, len(entries)

    src = []
    src.append("/*")
    src.append(" * unicode_tables.c - character tables of the WordPiece tokenizer (tokenizer.c).")
    src.append(" *")
    src.append(" * GENERATED by scripts/gen-unicode-tables.py; do not edit. Regenerate with")
    src.append(" *   python3 scripts/gen-unicode-tables.py")
    src.append(" *")
    src.append(" * Source: Unicode %s, from the unicodedata module of Python %s."
               % (ud.unidata_version, platform.python_version()))
    if hf_version:
        total = sum(len(v) for v in changed.values())
        src.append(" * Then made to agree, code point by code point, with Hugging Face tokenizers")
        src.append(" * %s (BertNormalizer steps and BertPreTokenizer), which differs from that"
                   % hf_version)
        src.append(" * Unicode version at %d places (its category and decomposition tables are" % total)
        src.append(" * older, its lowercase newer, its CJK ranges its own):")
        for step in STEPS:
            rs = ranges_of(changed[step])
            src.append(" *   %s: %d code points%s" % (step, len(changed[step]), ":" if rs else ""))
            line = " *    "
            for lo, hi in rs:
                item = " %04X" % lo if lo == hi else " %04X-%04X" % (lo, hi)
                if len(line) + len(item) > 98:
                    src.append(line)
                    line = " *    "
                line += item
            if rs:
                src.append(line)
    else:
        src.append(" * Not checked against Hugging Face tokenizers (--no-hf): rare code points may")
        src.append(" * be treated differently from the library.")
    src.append(" *")
    src.append(" * Hangul syllables (U+AC00..U+D7A3) decompose by arithmetic in tokenizer.c and")
    src.append(" * are not in fn_uc_nfd.")
    src.append(" */")
    src.append('#include "llm/unicode_tables.h"')
    src.append("")
    src.append('const char fn_uc_unicode_version[] = "%s";' % ud.unidata_version)
    src.append("")
    src.append("/* Flags of the ASCII characters, indexed by byte. */")
    src.append("const uint8_t fn_uc_ascii[128] = {")
    for i in range(0, 128, 8):
        vals = ", ".join(str(t.flags.get(cp, 0)) for cp in range(i, i + 8))
        src.append("    %s, /* %02X..%02X */" % (vals, i, i + 7))
    src.append("};")
    src.append("")
    src.append("/* Sorted, disjoint; code points in none have no flags and combining class 0. */")
    src.append("const fn_uc_range fn_uc_ranges[] = {")
    for lo, hi, (f, ccc) in ranges:
        src.append("    {0x%X, 0x%X, %s, %d}," % (lo, hi, flag_expr(f), ccc))
    src.append("};")
    src.append("const size_t fn_uc_ranges_count = %d;" % len(ranges))
    src.append("")
    src.append("/* Full canonical decomposition (NFD) of each code point that has one. */")
    lines, n_nfd = pool_table("nfd", t.decomp)
    src.extend(lines)
    src.append("")
    src.append("/* Lowercase of each code point whose lowercase differs (may be longer). */")
    lines, n_lower = pool_table("lower", t.lower)
    src.extend(lines)

    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write("\n".join(src) + "\n")
    os.replace(tmp, out_path)
    # The repository's style (.clang-format) applies to generated C too.
    if shutil.which("clang-format"):
        subprocess.run(["clang-format", "-i", out_path], check=True)
    else:
        print("gen-unicode-tables: clang-format not found; format %s before committing" % out_path)
    print("gen-unicode-tables: wrote %s (%d ranges, %d decompositions, %d lowercase mappings)"
          % (out_path, len(ranges), n_nfd, n_lower))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "src", "llm", "unicode_tables.c"))
    ap.add_argument("--no-hf", action="store_true",
                    help="use unicodedata alone, without checking against tokenizers")
    args = ap.parse_args()
    t = Tables()
    changed, hf_version = {s: [] for s in STEPS}, None
    if not args.no_hf:
        try:
            import tokenizers
        except ImportError:
            sys.exit("gen-unicode-tables: the Python package 'tokenizers' is needed to check "
                     "the tables (python3 -m pip install tokenizers), or pass --no-hf")
        hf_version = tokenizers.__version__
        changed = adjust(t, HF())
        for step in STEPS:
            print("gen-unicode-tables: %s: %d code points taken from tokenizers %s"
                  % (step, len(changed[step]), hf_version))
    emit(t, changed, hf_version, os.path.normpath(args.out))


if __name__ == "__main__":
    main()
