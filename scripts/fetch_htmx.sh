#!/bin/sh
# Fetches the pinned htmx from the npm registry (npm's own configured registry) and checks its checksum.
set -eu
: "${HTMX_VERSION:?}" "${HTMX_SHA256:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "htmx.org@${HTMX_VERSION}" >/dev/null && tar xzf "htmx.org-${HTMX_VERSION}.tgz")
actual=$(sha256sum "$tmp/package/dist/htmx.min.js" | cut -d' ' -f1)
if [ "$actual" != "$HTMX_SHA256" ]; then
  echo "htmx ${HTMX_VERSION}: checksum mismatch (got $actual)" >&2
  exit 1
fi
mkdir -p static/vendor
cp "$tmp/package/dist/htmx.min.js" static/vendor/htmx.min.js
echo "htmx ${HTMX_VERSION} fetched, checksum ok"
