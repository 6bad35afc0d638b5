#!/usr/bin/env bash
# build-static-agent.sh [OUT] — builds a fully static, stripped aurora-agent
# (default build/static/aurora-agent).  Used by `make static-agent` and by the
# build stage of Dockerfile.agent, so both produce the same binary.
#
# Every library comes from Debian 12 (bookworm):
#   libwebsockets.a (libwebsockets-dev), libssl.a + libcrypto.a (libssl-dev),
#   libyaml.a (libyaml-dev), libcap.a (libcap-dev), libz.a (zlib1g-dev),
#   libseccomp.a (libseccomp-dev: the cloud_exec sandbox's syscall filter),
#   libcares.a (libc-ares-dev: the agent's DNS resolver), and glibc's libc.a
#   (libc6-dev).
#   cJSON ships no static library, so libcjson.a is compiled here from
#   Debian's own source package `cjson` (the version of the installed
#   libcjson-dev), fetched with `apt-get source` through a private apt
#   configuration under build/static/apt (a deb-src entry for the same
#   mirror); the system's apt configuration is not touched.
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

# ---- 1. Debian packages ------------------------------------------------------
PKGS=(build-essential pkg-config dpkg-dev file ca-certificates
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
for a in libwebsockets.a libssl.a libcrypto.a libyaml.a libcap.a libz.a libseccomp.a libcares.a; do
  [ -f "$LIBDIR/$a" ] || { say "missing $LIBDIR/$a (its Debian -dev package ships it)"; exit 1; }
done

# ---- 2. libcjson.a from Debian's source package ------------------------------
mkdir -p "$B"
CJSON_VER=$(dpkg-query -W -f='${Version}' libcjson-dev)
CJ="$B/cjson-$CJSON_VER"
if [ ! -f "$CJ/libcjson.a" ] || [ ! -f "$CJ/include/cjson/cJSON.h" ]; then
  say "building libcjson.a from Debian source package cjson $CJSON_VER"
  APT="$B/apt"
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
  APTOPTS=(-o "Dir::Etc::SourceList=/dev/null"
           -o "Dir::Etc::SourceParts=$PWD/$APT/sourceparts"
           -o "Dir::State::Lists=$PWD/$APT/lists"
           -o "Dir::Cache=$PWD/$APT/cache"
           -o "Debug::NoLocking=1"
           -o "APT::Sandbox::User=root")
  apt-get "${APTOPTS[@]}" update -qq
  rm -rf "$APT/src" && mkdir -p "$APT/src"
  (cd "$APT/src" && apt-get "${APTOPTS[@]}" source -qq --download-only "cjson=$CJSON_VER")
  dsc=$(ls "$APT"/src/cjson_*.dsc)
  rm -rf "$APT/src/tree"
  dpkg-source --no-check -x "$dsc" "$APT/src/tree" >/dev/null
  rm -rf "$CJ" && mkdir -p "$CJ/include/cjson"
  $CC -O2 -fno-strict-aliasing -ffunction-sections -fdata-sections -std=c89 \
      -c "$APT/src/tree/cJSON.c" -o "$CJ/cJSON.o"
  ar rcs "$CJ/libcjson.a" "$CJ/cJSON.o"
  cp "$APT/src/tree/cJSON.h" "$CJ/include/cjson/cJSON.h"
fi

# ---- 3. the agent ------------------------------------------------------------
OBJ="$B/obj"
mkdir -p "$OBJ"
CFLAGS=(-O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
        -Wno-missing-field-initializers -ffunction-sections -fdata-sections
        -I"$CJ/include" -Icommon -Iagent)
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
if ! $CC -static -o "$OUT.unstripped" "${objs[@]}" -Wl,--gc-sections \
      -L"$CJ" -L"$LIBDIR" \
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
