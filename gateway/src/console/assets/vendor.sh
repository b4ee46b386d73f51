#!/usr/bin/env bash
# Reproduces the vendored charting library of the console from npm (no build step: the files are
# committed and embedded with include_str!). uPlot is MIT-licensed; its licence header stays in the file.
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
