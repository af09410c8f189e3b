#!/bin/sh
# Torito set-up: everything `npm start`, `npm test` and `npx torito` need on a fresh
# Debian 12 machine. Idempotent and cached: a second run does nothing but checks.
#   1. system packages (QEMU, gcc, musl, binutils, e2fsprogs, ...)
#   2. npm dependencies (npm ci when node_modules is missing or older than the lock file)
#   3. the QuickJS 2025-04-26 source from Debian's source package, checked against a pinned sha256
#   4. make -C platform: host qjsc, guest QuickJS, supervisor and runtime
# Options: --quiet (no progress lines), --bench (also what `npm run bench` needs).
set -eu

say() { [ "$QUIET" = 1 ] || echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

QUIET=0
BENCH=0
for arg in "$@"; do
  case "$arg" in
    --quiet) QUIET=1 ;;
    --bench) BENCH=1 ;;
    *) die "unknown option '$arg' (known: --quiet, --bench)" ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QJS_VERSION=2025.04.26
QJS_DEB_VERSION=2025.04.26-1
QJS_ORIG=quickjs_${QJS_VERSION}.orig.tar.xz
QJS_SHA256=ec81da5b3249ed648dbc7df4a1654988910e66a118d9b71cb63534216efcfbbe
QJS_DIR=build/quickjs/src

# --- 1. system packages -----------------------------------------------------------
# command -> Debian package that provides it
PKGS=""
need() { command -v "$1" >/dev/null 2>&1 || PKGS="$PKGS $2"; }
need qemu-system-x86_64 qemu-system-x86
need gcc gcc
need make make
need as binutils
need musl-gcc musl-tools
need mke2fs e2fsprogs
need e2fsck e2fsprogs
need curl curl
need wget wget
need wrk wrk
need xz xz-utils
need dpkg-source dpkg-dev
need gdb gdb
need pgrep procps
[ -f /usr/lib/x86_64-linux-musl/libc.a ] || PKGS="$PKGS musl-dev"
if [ "$BENCH" = 1 ]; then
  # npm run bench only: the Linux + Node.js baseline (bench/linux-node/guest.ts) fetches Debian's
  # kernel and busybox-static with apt-get download, unpacks them with dpkg-deb, strips a copy of
  # node and lists its libraries with ldd; the tap runs need ip (iproute2).
  need apt-get apt
  need dpkg-deb dpkg
  need strip binutils
  need ldd libc-bin
  need ip iproute2
fi
if [ -n "$PKGS" ]; then
  [ "$(id -u)" = 0 ] || die "missing packages:$PKGS (run as root or: sudo apt-get install$PKGS)"
  say "installing$PKGS"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
fi

# --- 2. npm dependencies ------------------------------------------------------------
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$NODE_MAJOR" -ge 20 ] || die "Node.js 20 or newer is needed (found $(node -v 2>/dev/null || echo none))"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

# --- 3. QuickJS source ------------------------------------------------------------
if [ ! -f "$QJS_DIR/quickjs.c" ]; then
  mkdir -p build/quickjs/dl
  if [ ! -f "build/quickjs/dl/$QJS_ORIG" ]; then
    say "fetching QuickJS $QJS_DEB_VERSION source package"
    # The source package lives in trixie; add a deb-src entry for it (root only).
    if ! (cd build/quickjs/dl && apt-get source --download-only -qq "quickjs=$QJS_DEB_VERSION" >/dev/null 2>&1); then
      [ "$(id -u)" = 0 ] || die "cannot fetch the quickjs source package; as root, add a deb-src entry for Debian trixie"
      cat > /etc/apt/sources.list.d/torito-trixie-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
      apt-get update -qq >/dev/null
      (cd build/quickjs/dl && apt-get source --download-only -qq "quickjs=$QJS_DEB_VERSION" >/dev/null 2>&1) ||
        die "apt-get source quickjs=$QJS_DEB_VERSION failed"
    fi
  fi
  echo "$QJS_SHA256  build/quickjs/dl/$QJS_ORIG" | sha256sum -c --status ||
    die "sha256 mismatch for $QJS_ORIG (expected $QJS_SHA256)"
  rm -rf "$QJS_DIR.tmp" && mkdir -p "$QJS_DIR.tmp"
  tar -xJf "build/quickjs/dl/$QJS_ORIG" -C "$QJS_DIR.tmp" --strip-components=1
  rm -rf "$QJS_DIR" && mv "$QJS_DIR.tmp" "$QJS_DIR"
fi

# --- 4. platform --------------------------------------------------------------------
if [ "$QUIET" = 1 ]; then
  make -s -C platform >/dev/null || die "platform build failed (run: make -C platform)"
else
  make -C platform
fi
say "ready"
