#!/usr/bin/env bash
# build-static-agent.sh [OUT] — builds a fully static, stripped aurora-agent
# (default build/static/aurora-agent).  Used by `make static-agent` and by the
# build stage of Dockerfile.agent, so both produce the same binary.
#
# Every library comes from Debian 12 (bookworm):
#   libwebsockets.a (libwebsockets-dev),
#   libyaml.a (libyaml-dev), libcap.a (libcap-dev), libz.a (zlib1g-dev),
#   libseccomp.a (libseccomp-dev: the cloud_exec sandbox's syscall filter),
#   libcares.a (libc-ares-dev: the agent's DNS resolver), and glibc's libc.a
#   (libc6-dev).
#   cJSON ships no static library, so libcjson.a is compiled here from
#   Debian's own source package `cjson` (the version of the installed
#   libcjson-dev), fetched with `apt-get source` through a private apt
#   configuration under build/static/apt (a deb-src entry for the same
#   mirror); the system's apt configuration is not touched.
#   libssl.a + libcrypto.a are compiled the same way from Debian's source
#   package `openssl` (3.0, the libssl-dev version when the mirror still has
#   it, else the newest 3.0 it has), configured for what the agent uses: a TLS
#   1.2/1.3 client with the usual server keys (RSA, ECDSA, Ed25519, X25519,
#   P-256/384/521, AES-GCM, ChaCha20-Poly1305, SHA-2).  Legacy ciphers,
#   DTLS, SSL 3, engines, CMS/OCSP/CT/TS/CMP and the other algorithm families
#   are left out, code is built with -Os and function sections: libcrypto.a
#   links to 1.7 instead of 3.3 MiB and the stripped agent to < 4 MiB
#   (docs/agent-footprint.md).  It builds in ~1.5 min on two cores and is kept
#   under build/static/openssl-<version>.  (Debian's libssl-dev still has to be
#   installed: lws's headers and pkg-config expect it.)
#
# Both libraries are also kept in a cache outside the tree, AURORA_BUILD_CACHE
# (default ~/.cache/aurora-build; empty: none), like the packages apt keeps:
# a fresh clone on the same machine (CI, `git clone . /tmp/x && make test`)
# then links in seconds instead of rebuilding OpenSSL.  An entry is used only
# when its stamp matches exactly: the configure options, the flags, the
# compiler's version and the installed libssl-dev's (cJSON: its version).
#
# No NSS at run time: the agent resolves host names with c-ares (agent/resolve.c),
# which reads /etc/hosts and /etc/resolv.conf itself, and hands libwebsockets
# numeric addresses, so the static glibc never loads an NSS module; a root
# holding only the binary, a CA bundle, /etc/hosts and /etc/resolv.conf is
# enough (tests/integration/test_static_agent.py).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-build/static/aurora-agent}
B=build/static
CC=${CC:-cc}
STRIP=${STRIP:-strip}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}

say() { echo "static-agent: $*"; }

CACHE=${AURORA_BUILD_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/aurora-build}
# from_cache NAME: copies the cache's entry NAME into $B (0), or 1 when the
# cache has none
from_cache() {
  [ -n "$CACHE" ] && [ -f "$CACHE/$1/stamp" ] || return 1
  rm -rf "${B:?}/$1" && cp -r "$CACHE/$1" "$B/$1"
}
# to_cache DIR: stores a finished DIR (with its stamp) under its name, replacing
# an older entry; best effort: a cache that cannot be written costs only time
to_cache() {
  [ -n "$CACHE" ] || return 0
  local name tmp
  name=$(basename "$1")
  mkdir -p "$CACHE" 2>/dev/null && tmp=$(mktemp -d "$CACHE/.new.XXXXXX" 2>/dev/null) || return 0
  if cp -r "$1/." "$tmp/"; then
    rm -rf "${CACHE:?}/$name" && mv -T "$tmp" "$CACHE/$name" && return 0
  fi
  rm -rf "$tmp"
}

# ---- 1. Debian packages ------------------------------------------------------
PKGS=(build-essential pkg-config dpkg-dev file ca-certificates perl
      libwebsockets-dev libssl-dev libyaml-dev libcap-dev zlib1g-dev libcjson-dev libseccomp-dev
      libc-ares-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
LIBDIR=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine)
for a in libwebsockets.a libyaml.a libcap.a libz.a libseccomp.a libcares.a; do
  [ -f "$LIBDIR/$a" ] || { say "missing $LIBDIR/$a (its Debian -dev package ships it)"; exit 1; }
done

# ---- 2. Debian source packages (cJSON, OpenSSL) --------------------------------
mkdir -p "$B"
APT="$B/apt"
APTOPTS=(-o "Dir::Etc::SourceList=/dev/null"
         -o "Dir::Etc::SourceParts=$PWD/$APT/sourceparts"
         -o "Dir::State::Lists=$PWD/$APT/lists"
         -o "Dir::Cache=$PWD/$APT/cache"
         -o "Debug::NoLocking=1"
         -o "APT::Sandbox::User=root")
apt_ready=0
apt_setup() {
  [ "$apt_ready" = 1 ] && return 0
  mkdir -p "$APT/sourceparts" "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/src"
  KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
  cat >"$APT/sourceparts/debian-src.sources" <<EOF
Types: deb-src
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: $KEYRING

Types: deb-src
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: $KEYRING
EOF
  apt-get "${APTOPTS[@]}" update -qq
  apt_ready=1
}
# debian_source PKG VERSION DIR: the unpacked source package (patches applied) in DIR
debian_source() {
  local pkg=$1 ver=$2 dir=$3 dl="$APT/src/$1"
  rm -rf "$dl" && mkdir -p "$dl"
  (cd "$dl" && apt-get "${APTOPTS[@]}" source -qq --download-only "$pkg=$ver") || return 1
  rm -rf "$dir"
  dpkg-source --no-check -x "$(ls "$dl"/"${pkg}"_*.dsc)" "$dir" >/dev/null
}

CJSON_VER=$(dpkg-query -W -f='${Version}' libcjson-dev)
CJ="$B/cjson-$CJSON_VER"
CJ_STAMP="$CJSON_VER $($CC -dumpfullversion 2>/dev/null || $CC -dumpversion)"
if [ ! -f "$CJ/stamp" ] || [ "$(cat "$CJ/stamp")" != "$CJ_STAMP" ]; then
  if from_cache "cjson-$CJSON_VER" && [ "$(cat "$CJ/stamp")" = "$CJ_STAMP" ]; then
    say "libcjson.a $CJSON_VER from $CACHE"
  fi
fi
if [ ! -f "$CJ/stamp" ] || [ "$(cat "$CJ/stamp")" != "$CJ_STAMP" ] || [ ! -f "$CJ/libcjson.a" ] ||
   [ ! -f "$CJ/include/cjson/cJSON.h" ]; then
  say "building libcjson.a from Debian source package cjson $CJSON_VER"
  apt_setup
  debian_source cjson "$CJSON_VER" "$APT/src/tree"
  rm -rf "$CJ" && mkdir -p "$CJ/include/cjson"
  $CC -O2 -fno-strict-aliasing -ffunction-sections -fdata-sections -std=c89 \
      -c "$APT/src/tree/cJSON.c" -o "$CJ/cJSON.o"
  ar rcs "$CJ/libcjson.a" "$CJ/cJSON.o"
  cp "$APT/src/tree/cJSON.h" "$CJ/include/cjson/cJSON.h"
  echo "$CJ_STAMP" >"$CJ/stamp"
  to_cache "$CJ"
fi

# OpenSSL: what is left out, and why the agent does not need it (a TLS client
# of one server; the health/metrics endpoints are plain HTTP):
#   no-legacy no-engine no-module no-dso    no provider/engine loaded at run time
#   no-ssl3 no-dtls no-srp no-srtp no-sctp no-comp   protocols the server never speaks
#   no-idea no-camellia no-seed no-aria no-sm2 no-sm3 no-sm4 no-whirlpool no-rc2
#   no-rc4 no-rc5 no-md4 no-mdc2 no-siphash no-dsa no-ec2m no-gost no-bf no-cast
#   no-des no-scrypt                         in no TLS 1.2/1.3 suite or usual
#                                            server certificate
#   no-cms no-ts no-ct no-ocsp no-cmp no-rfc3779   PKI extras the agent never calls
#   no-async no-ui-console no-uplink no-tests no-fips no-shared no-pic
#   no-multiblock                             TLS 1.2 CBC's multi-buffer writes: two
#                                            SHA assembler files (62 KiB), unused by GCM
#   no-chacha no-poly1305                     every TLS 1.3 peer must offer AES-128-GCM
#                                            (RFC 8446, 9.1), done in hardware here
#   no-ocb no-siv no-cmac no-blake2 no-rmd160 in no TLS suite
#   no-nextprotoneg                           ALPN replaced NPN; lws uses ALPN
#   no-filenames                              source file names in error records
#                                            (the reason strings stay)
# -DOPENSSL_SMALL_FOOTPRINT and -Os: smaller tables and code; the assembler is
# kept (AES-NI, SHA, P-256, X25519, bignum).
OPENSSL_OPTS=(no-shared no-pic no-module no-dso no-engine no-legacy no-tests no-async no-comp
  no-ssl3 no-dtls no-srp no-srtp no-sctp no-idea no-camellia no-seed no-aria no-sm2 no-sm3
  no-sm4 no-whirlpool no-rc2 no-rc4 no-rc5 no-md4 no-mdc2 no-siphash no-dsa no-ec2m no-gost
  no-cmp no-rfc3779 no-cms no-ts no-ct no-ocsp no-scrypt no-bf no-cast no-des
  no-ui-console no-uplink no-fips no-multiblock no-chacha no-poly1305 no-ocb no-siv no-cmac
  no-blake2 no-rmd160 no-nextprotoneg no-filenames)
OPENSSL_CFLAGS="-Os -pthread -Wa,--noexecstack -ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables -fno-unwind-tables"
# OpenSSL's target for this machine: its assembler is per architecture, and
# Dockerfile.agent builds for arm64 nodes too (TARGETARCH).
case "$(dpkg-architecture -qDEB_HOST_ARCH 2>/dev/null || uname -m)" in
  amd64 | x86_64) OPENSSL_TARGET=linux-x86_64 ;;
  arm64 | aarch64) OPENSSL_TARGET=linux-aarch64 ;;
  *) say "no OpenSSL target known for $(uname -m) (amd64 and arm64 are)"; exit 1 ;;
esac
# The installed libssl-dev's version is part of the stamp: a Debian security
# update of OpenSSL makes a build (and a cache entry) from before it stale.
OSSL_STAMP=$(printf '%s\n' "$OPENSSL_TARGET" "${OPENSSL_OPTS[*]}" "$OPENSSL_CFLAGS" \
  "$($CC -dumpfullversion 2>/dev/null || $CC -dumpversion)" \
  "$(dpkg-query -W -f='${Version}' libssl-dev)" | sha256sum | cut -c1-12)
OSSL=""
if [ "${AGENT_OPENSSL:-}" = debian ]; then
  # the previous link (Debian's libssl.a/libcrypto.a as packaged), for
  # bench/agent_bench.sh's before/after comparison
  OSSL=$B/openssl-debian
  mkdir -p "$OSSL/include"
  ln -sf "$LIBDIR/libssl.a" "$LIBDIR/libcrypto.a" "$OSSL/"
fi
shopt -s nullglob
for d in "$B"/openssl-* ${CACHE:+"$CACHE"/openssl-*}; do
  [ -n "$OSSL" ] && break
  [ -f "$d/stamp" ] && [ "$(cat "$d/stamp")" = "$OSSL_STAMP" ] && [ -f "$d/libcrypto.a" ] || continue
  if [ "$(dirname "$d")" = "$B" ]; then
    OSSL=$d
  elif from_cache "$(basename "$d")"; then
    OSSL=$B/$(basename "$d")
    say "libssl.a + libcrypto.a ($(basename "$d")) from $CACHE"
  fi
done
shopt -u nullglob
if [ -z "$OSSL" ]; then
  apt_setup
  # the installed libssl-dev version first; a mirror keeps only the newest of
  # each suite, so then the newest 3.0 it has
  cands=("$(dpkg-query -W -f='${Version}' libssl-dev)"
         $(apt-cache "${APTOPTS[@]}" showsrc openssl 2>/dev/null |
           awk '/^Package: /{p=$2} /^Version: /&&p=="openssl"{print $2}' | sort -rV))
  ver=""
  for v in "${cands[@]}"; do
    case "$v" in 3.0.*) ;; *) continue ;; esac
    if debian_source openssl "$v" "$APT/src/openssl-tree" 2>/dev/null; then ver=$v; break; fi
  done
  [ -n "$ver" ] || { say "cannot fetch Debian's openssl 3.0 source package"; exit 1; }
  say "building libssl.a + libcrypto.a from Debian source package openssl $ver (~2 min)"
  OSSL="$B/openssl-$ver"
  (cd "$APT/src/openssl-tree" &&
   CFLAGS="$OPENSSL_CFLAGS" ./Configure "$OPENSSL_TARGET" --prefix=/nonexistent --openssldir=/usr/lib/ssl \
     "${OPENSSL_OPTS[@]}" -DOPENSSL_SMALL_FOOTPRINT >configure.log 2>&1 &&
   make -j"$(nproc)" build_libs >make.log 2>&1) ||
    { tail -30 "$APT/src/openssl-tree/configure.log" "$APT/src/openssl-tree/make.log" >&2; exit 1; }
  rm -rf "$OSSL" && mkdir -p "$OSSL"
  cp "$APT/src/openssl-tree/libssl.a" "$APT/src/openssl-tree/libcrypto.a" "$OSSL/"
  cp -r "$APT/src/openssl-tree/include" "$OSSL/include"
  echo "$OSSL_STAMP" >"$OSSL/stamp"
  rm -rf "$APT/src/openssl-tree"
  to_cache "$OSSL"
fi

# ---- 3. the agent ------------------------------------------------------------
OBJ="$B/obj${AGENT_OPENSSL:+-$AGENT_OPENSSL}"
mkdir -p "$OBJ"
# -Os and no unwind tables: the agent's own code is not where time goes (it
# waits on sockets and children), and nothing unwinds its frames (no C++, no
# pthread_cancel); both keep the binary, which is mapped whole, smaller.
CFLAGS=(-Os -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
        -Wno-missing-field-initializers -ffunction-sections -fdata-sections
        -fno-asynchronous-unwind-tables -fno-unwind-tables
        -I"$OSSL/include" -I"$CJ/include" -Icommon -Iagent)
objs=()
for src in common/*.c agent/*.c; do
  o="$OBJ/$(echo "${src%.c}" | tr / _).o"
  if [ ! -f "$o" ] || [ "$src" -nt "$o" ] || [ -n "$(find common agent -name '*.h' -newer "$o" -print -quit)" ] \
     || [ "$0" -nt "$o" ]; then
    $CC "${CFLAGS[@]}" -c "$src" -o "$o"
  fi
  objs+=("$o")
done
mkdir -p "$(dirname "$OUT")"
# The static glibc warns that getaddrinfo/getpwnam/dlopen (referenced by
# libwebsockets and OpenSSL) and getservbyname/getservbyport_r (referenced by
# c-ares for service names) would need shared NSS modules at run time: the
# agent never calls them with a host name and never asks c-ares for a service
# (see above), so those warnings are expected and filtered; any other linker
# message is shown.
link_log="$B/link.log"
# The link map ($OUT.map) is what bench/agent_size.py reads to attribute the
# binary's size to each library.
if ! $CC -static -o "$OUT.unstripped" "${objs[@]}" -Wl,--gc-sections -Wl,-Map="$OUT.map" \
      -L"$OSSL" -L"$CJ" -L"$LIBDIR" \
      -Wl,--start-group -lwebsockets -lssl -lcrypto -lcap -lz -lyaml -lcjson -lseccomp -lcares -Wl,--end-group \
      -lpthread -ldl -lm 2>"$link_log"; then
  cat "$link_log" >&2
  exit 1
fi
grep -v -E "statically linked applications requires at runtime the shared libraries|in function \`" \
  "$link_log" >&2 || true
$STRIP --strip-all -o "$OUT" "$OUT.unstripped"
rm -f "$OUT.unstripped"

desc=$(file -b "$OUT")
case "$desc" in
  *"statically linked"*) ;;
  *) say "$OUT is not statically linked: $desc"; exit 1 ;;
esac
say "$OUT: $(stat -c %s "$OUT") bytes; $desc"
