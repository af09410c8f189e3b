#!/bin/sh
# Build-time proofs about every Torito image, run by the platform Makefile:
#   1. no instruction in the image can enter the host kernel's syscall path: under this
#      machine's /dev/kvm `syscall` in ring 3 does not reach ring 0, and `int 0x80` is #UD.
#      The probe links the platform with an empty app, so every libc function any app
#      can reach is in it.
#   2. the musl thread-block offsets that runtime/main.c mirrors still hold.
set -eu
P=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat > "$T/app.S" <<'ASM'
        .section .rodata.torito_app, "a"
        .globl torito_app_bytecode, torito_app_bytecode_end, torito_app_sourcemap, torito_app_sourcemap_end, torito_app_files, torito_app_files_end
torito_app_bytecode:
torito_app_bytecode_end:
torito_app_sourcemap:
torito_app_sourcemap_end:
torito_app_files:
torito_app_files_end:
ASM
as --64 -o "$T/app.o" "$T/app.S"
ld -nostdlib -static --no-warn-rwx-segments -z noexecstack -z max-page-size=4096 -T "$P/link.ld" -o "$T/probe.elf" $(cat "$P/link.txt") "$T/app.o"
objdump -d --no-show-raw-insn "$T/probe.elf" > "$T/probe.dis"
if grep -nE '\s(syscall|sysenter|int\s+\$0x80)\b' "$T/probe.dis" > "$T/bad"; then
  echo "check-image: the image contains system call instructions:" >&2
  for addr in $(awk '{print $1}' "$T/bad" | tr -d ':'); do
    addr2line -f -e "$T/probe.elf" "0x$addr" | head -1 >&2
  done
  exit 1
fi
# musl: errno at %fs:0 + 0x34, locale at %fs:0 + 0xa8 (struct runtime_tls in runtime/main.c)
grep -A3 '<__errno_location>:' "$T/probe.dis" | grep -q 'add    \$0x34,%rax' ||
  { echo "check-image: musl's errno offset changed (expected 0x34)" >&2; exit 1; }
if grep -q '<__ctype_get_mb_cur_max>:' "$T/probe.dis"; then
  grep -A3 '<__ctype_get_mb_cur_max>:' "$T/probe.dis" | grep -q '0xa8(%rax)' ||
    { echo "check-image: musl's locale offset changed (expected 0xa8)" >&2; exit 1; }
fi
# the supervisor must stay integer-only: no SSE/x87 instructions in ring-0 code
objdump -d --no-show-raw-insn -j .boot -j .isr -j .supervisor "$T/probe.elf" |
  grep -E '\s(movaps|movups|movdqa|movdqu|ldmxcsr|stmxcsr|fxsave|fxrstor|xmm|fld|fst)' && {
    echo "check-image: SSE or x87 instructions in the supervisor" >&2; exit 1; } || true
echo "check-image: ok ($(wc -l < "$T/probe.dis") lines disassembled, no syscall instructions)"
