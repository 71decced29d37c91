#!/bin/sh
# Make qemu-img, qemu-io (Debian qemu-utils) and sgdisk (gdisk) available for the container
# tests (tests/test_containers.py), which compare our qcow2 and GPT readers with images the
# real tools make. Installs the Debian packages when possible; otherwise says why not.
# Always exits 0: without the tools those tests skip, they do not fail.

missing=""
for pair in qemu-img:qemu-utils qemu-io:qemu-utils sgdisk:gdisk; do
    bin=${pair%%:*}
    pkg=${pair#*:}
    if command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || [ -x "/sbin/$bin" ]; then
        continue
    fi
    case " $missing " in
        *" $pkg "*) ;;
        *) missing="$missing $pkg" ;;
    esac
done
missing=${missing# }

if [ -z "$missing" ]; then
    echo "ensure-test-tools: found qemu-img, qemu-io and sgdisk"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-test-tools: no apt-get on this system; install $missing yourself," \
         "the container tests that need them will be skipped"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-test-tools: not root, not installing; run 'apt-get install $missing'" \
         "as root, the container tests that need them will be skipped"
    exit 0
fi

echo "ensure-test-tools: installing $missing with apt-get"
# $missing is unquoted on purpose: one word per package.
# shellcheck disable=SC2086
if DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
then
    echo "ensure-test-tools: installed"
else
    echo "ensure-test-tools: apt-get failed; the container tests that need them will be skipped"
fi
exit 0
