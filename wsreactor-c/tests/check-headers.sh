#!/usr/bin/env bash
# The hand-written headers against the library: every function the headers declare is
# exported by LIB, and every function LIB exports (ws_*, lws_*, libwebsocket*) is declared.
# Usage: check-headers.sh target/release/libwsreactor_c.so
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
LIB=$1
exported=$(nm -D --defined-only "$LIB" | awk '$2 == "T" { print $3 }' | grep -E '^(ws_|lws_|libwebsocket)' | sort -u)
declared=$(cat "$HERE"/include/*.h | tr '\n' ' ' | grep -oE '(ws_|lws_|libwebsocket)[a-z0-9_]*[[:space:]]*\(' \
  | sed 's/[[:space:]]*($//' | sort -u)
# names followed by '(' that are not functions: none today (function pointer members
# are written (*name)); macro-like names would be listed here.
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
undeclared=$(comm -13 <(echo "$declared") <(echo "$exported"))
echo "exported and declared: $(comm -12 <(echo "$declared") <(echo "$exported") | wc -l) functions"
rc=0
if [[ -n "$missing" ]]; then echo "declared in include/ but not exported:"; echo "$missing"; rc=1; fi
if [[ -n "$undeclared" ]]; then echo "exported but not declared in include/:"; echo "$undeclared"; rc=1; fi
# Every header compiles on its own as C99 with all warnings (-pedantic -Werror).
for h in "$HERE"/include/*.h; do
  echo "#include \"$h\"" | gcc -x c -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only - 
done
exit $rc
