#!/bin/sh
# Compile the usage example of every public header, so that an example that no longer matches
# the code fails `make test` (test common_header_examples).
#
#   tests/header_examples.sh [HEADER...]
#
# Default: every tracked *.h outside tests/.
#
# The example is the first run of lines in the header's leading comment that are indented by
# at least four spaces after " * " and follow a blank " *" line (blank lines may sit inside the
# run; an indented continuation of a sentence is not an example). Its "#include"
# lines go to the top of a C file; the rest becomes the body of a function placed after
# #include "HEADER"; the file is compiled with $CC -fsyntax-only and the project's warnings as
# errors (unused variables excepted). Headers without such a block are skipped; a header
# given by name must have one. Exit status: 0 when every example compiles, 1 otherwise
# (each failure prints the header, the generated file and the compiler's message).
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

named=1
if [ $# -eq 0 ]; then
    named=0
    hs=$(git ls-files '*.h' 2>/dev/null) || hs=$(find . -name '*.h' ! -path './build/*' | sed 's,^\./,,')
    # shellcheck disable=SC2086
    set -- $(printf '%s\n' $hs | grep -v '^tests/' | sort)
fi

fails=0
checked=0
for h in "$@"; do
    [ -f "$h" ] || { echo "header_examples: $h: no such file" >&2; fails=$((fails + 1)); continue; }
    # the leading comment, up to its first "*/"
    awk 'NR == 1 && !/^\/\*/ { exit } { print } /\*\// { exit }' "$h" >"$TMP/comment"
    # the first run of example lines, without the " * " prefix (4 leading spaces kept off)
    awk '
        /^ \*     / { if (!started && !blank) { blank = 0; next }
                      started = 1; sub(/^ \*     /, ""); print; next }
        /^ \*$/      { blank = 1; if (started) print ""; next }
                     { blank = 0; if (started) exit }
    ' "$TMP/comment" >"$TMP/example"
    if ! grep -q '[^[:space:]]' "$TMP/example"; then
        if [ $named = 1 ]; then
            echo "header_examples: $h: no usage example in its leading comment" >&2
            fails=$((fails + 1))
        fi
        continue
    fi
    checked=$((checked + 1))
    src="$TMP/$(echo "$h" | tr '/.' '__').c"
    {
        printf '#include <stdatomic.h>\n#include <stddef.h>\n#include <stdint.h>\n'
        printf '#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n'
        grep '^#include' "$TMP/example"
        printf '#include "%s"\n' "$h"
        printf 'void h2t_header_example(void);\nvoid h2t_header_example(void)\n{\n'
        grep -v '^#include' "$TMP/example"
        printf '}\n'
    } >"$src"
    if ! $CC -std=c11 -D_GNU_SOURCE -I. -Ibuild/gen -Wall -Wextra -Werror -Wshadow \
        -Wno-unused-variable -Wno-unused-but-set-variable -Wno-unused-parameter \
        -fsyntax-only "$src" >"$TMP/err" 2>&1; then
        echo "header_examples: the example in $h does not compile:" >&2
        sed 's/^/    /' "$src" >&2
        sed 's/^/  /' "$TMP/err" >&2
        fails=$((fails + 1))
    fi
done
echo "header_examples: $checked examples compiled, $fails failed"
[ $fails -eq 0 ]
