"""Spreadsheet formula prefixes, shared by every CSV export path."""

# A spreadsheet runs a cell starting with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Every character Python counts as whitespace (str.isspace). A spreadsheet may
# trim leading whitespace on import and then read " =1+1" as a formula, so the
# export neutralizes a prefix behind these too, in Python and in SQL alike.
LEADING_WHITESPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())
