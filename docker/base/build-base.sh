#!/usr/bin/env bash
# Build a stand-in for python:3.11-slim from Debian packages alone, for machines that
# reach a Debian mirror and PyPI but no container registry (air-gapped builds).
#
#   docker/base/build-base.sh [IMAGE_TAG]      (default cifar10-base:bookworm; needs root)
#
# debootstrap --variant=minbase installs Debian bookworm's essential packages plus
# python3 (3.11), python3-venv and ca-certificates; `docker import` turns the folder
# into an image. This machine's CA bundle is copied in so that pip inside `docker
# build` trusts the same (possibly intercepting) TLS path to the package index as
# the host does. Then: docker build --build-arg BASE_IMAGE=cifar10-base:bookworm .
set -euo pipefail
tag="${1:-cifar10-base:bookworm}"
suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
docker="${DOCKER:-docker}"

if [ "$(id -u)" != 0 ]; then echo "build-base.sh: debootstrap needs root" >&2; exit 1; fi
command -v debootstrap >/dev/null || { echo "build-base.sh: install debootstrap (apt-get install debootstrap)" >&2; exit 1; }

root="$(mktemp -d /tmp/cifar10-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" "$mirror"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
# What python:3.11-slim offers that the Dockerfile relies on: `python` on PATH.
ln -sf python3 "$root/usr/bin/python"
# Slim the image as the official slim images do.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar -C "$root" -c . | "$docker" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$tag"
echo "built $tag"
