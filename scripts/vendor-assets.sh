#!/usr/bin/env bash
# Fetch the pinned front-end assets from the npm registry into static/vendor/.
#
# Pages never load anything from a CDN: htmx, its WebSocket extension and the chart
# library are committed under static/vendor/. Run this script to refresh them (bump the
# pins below first); it rewrites static/vendor/VERSIONS.txt with name, version and sha256.
#
#   scripts/vendor-assets.sh            # fetch and copy
#   scripts/vendor-assets.sh --check    # verify the committed files against VERSIONS.txt
set -euo pipefail

HTMX_VERSION="2.0.11"
HTMX_WS_VERSION="2.0.4"
ECHARTS_VERSION="6.1.0"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor="$root/static/vendor"

if [[ "${1:-}" == "--check" ]]; then
    cd "$vendor"
    # VERSIONS.txt lines: <file> <package>@<version> sha256:<hex>
    grep -v '^#' VERSIONS.txt | while read -r file _package digest; do
        echo "${digest#sha256:}  $file"
    done | sha256sum --check --quiet
    echo "static/vendor matches VERSIONS.txt"
    exit 0
fi

command -v npm >/dev/null || { echo "vendor-assets: npm is required" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# fetch PACKAGE VERSION: unpack the registry tarball into $work/PACKAGE/package/
fetch() {
    local package="$1" version="$2"
    mkdir -p "$work/$package"
    (cd "$work/$package" && npm pack --silent "$package@$version" >/dev/null 2>&1 \
        && tar -xzf ./*.tgz)
    local got
    got="$(node -p "require('$work/$package/package/package.json').version")"
    if [[ "$got" != "$version" ]]; then
        echo "vendor-assets: asked for $package@$version, got $got" >&2
        exit 1
    fi
}

fetch htmx.org "$HTMX_VERSION"
fetch htmx-ext-ws "$HTMX_WS_VERSION"
fetch echarts "$ECHARTS_VERSION"

mkdir -p "$vendor"
install -m 0644 "$work/htmx.org/package/dist/htmx.min.js" "$vendor/htmx.min.js"
install -m 0644 "$work/htmx-ext-ws/package/dist/ws.js" "$vendor/ws.js"
install -m 0644 "$work/echarts/package/dist/echarts.min.js" "$vendor/echarts.min.js"

# The licenses travel with the files (echarts is Apache-2.0 and ships a NOTICE).
mkdir -p "$vendor/licenses"
install -m 0644 "$work/htmx.org/package/LICENSE" "$vendor/licenses/htmx.org.LICENSE"
install -m 0644 "$work/htmx-ext-ws/package/LICENSE" "$vendor/licenses/htmx-ext-ws.LICENSE"
install -m 0644 "$work/echarts/package/LICENSE" "$vendor/licenses/echarts.LICENSE"
install -m 0644 "$work/echarts/package/NOTICE" "$vendor/licenses/echarts.NOTICE"

{
    echo "# Vendored by scripts/vendor-assets.sh from the npm registry. Do not edit by hand."
    echo "# file package@version sha256"
    for entry in "htmx.min.js htmx.org@$HTMX_VERSION" \
                 "ws.js htmx-ext-ws@$HTMX_WS_VERSION" \
                 "echarts.min.js echarts@$ECHARTS_VERSION"; do
        set -- $entry
        echo "$1 $2 sha256:$(sha256sum "$vendor/$1" | cut -d' ' -f1)"
    done
} > "$vendor/VERSIONS.txt"

cat "$vendor/VERSIONS.txt"
