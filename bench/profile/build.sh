#!/bin/sh
# Builds build/profile/qjs-prof: the host qjs with the sampling profiler of prof.c, from the
# same QuickJS tree as the guest engine. Usage: sh bench/profile/build.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
src=$repo/build/quickjs/src
out=$repo/build/profile
mkdir -p "$out"
# qjs.c with the profiler's globals installed next to std's helpers
sed 's/^\( *\)js_std_add_helpers(ctx, argc - optind, argv + optind);/&\n\1{ extern void prof_install(JSContext *); prof_install(ctx); }/' "$src/qjs.c" > "$out/qjs-prof-main.c"
grep -q prof_install "$out/qjs-prof-main.c"
[ -f "$out/repl.c" ] || cp "$src/repl.c" "$out/repl.c"
flags="-O2 -g -fno-omit-frame-pointer -no-pie -fwrapv -D_GNU_SOURCE -DCONFIG_VERSION=\"$(cat "$src/VERSION")\" -I$src -w"
gcc $flags -o "$out/qjs-prof" "$here/prof.c" "$out/qjs-prof-main.c" "$src/repl.c" \
  "$src/libregexp.c" "$src/libunicode.c" "$src/cutils.c" "$src/dtoa.c" "$src/quickjs-libc.c" -lm -ldl -lpthread -lrt
echo "$out/qjs-prof"
