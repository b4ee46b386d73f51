#!/usr/bin/env bash
# Reproduces the vendored charting library of the console from npm (no build step: the files are
# committed and embedded with include_str!). uPlot is MIT-licensed; its licence header stays in the file.
# Expected sha256 of the committed files (npm uplot@1.6.32):
#   19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f  uPlot.iife.min.js
#   df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04  uPlot.min.css
set -euo pipefail
cd "$(dirname "$0")"
VERSION=1.6.32
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@${VERSION}" >/dev/null && tar xzf "uplot-${VERSION}.tgz")
cp "$tmp/package/dist/uPlot.iife.min.js" uPlot.iife.min.js
cp "$tmp/package/dist/uPlot.min.css" uPlot.min.css
cp "$tmp/package/LICENSE" uPlot.LICENSE
sha256sum uPlot.iife.min.js uPlot.min.css
