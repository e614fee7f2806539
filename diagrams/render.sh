#!/usr/bin/env bash
# Renders every diagrams/*.dot to .svg and .png beside it with Graphviz dot (PNG at 150 dpi).
# The sources are read on stdin, so the output never names a path, and the SVG carries no
# timestamp: re-rendering unchanged sources gives identical files on one Graphviz version.
set -euo pipefail

if ! command -v dot >/dev/null 2>&1; then
  echo "render.sh: Graphviz 'dot' not found; install graphviz: apt-get install graphviz" >&2
  exit 1
fi

cd "$(dirname "${BASH_SOURCE[0]}")"

shopt -s nullglob
sources=(./*.dot)
if ((${#sources[@]} == 0)); then
  echo "render.sh: no .dot files in $(pwd)" >&2
  exit 1
fi

temporaries=()
trap 'rm -f -- "${temporaries[@]}"' EXIT

for source in "${sources[@]}"; do
  name="${source%.dot}"
  name="${name#./}"
  temporaries=("$name.svg.tmp" "$name.png.tmp")
  # Write to temporary files first, so a syntax error never leaves a half-written picture.
  dot -Tsvg <"$source" >"$name.svg.tmp"
  dot -Tpng -Gdpi=150 <"$source" >"$name.png.tmp"
  mv -f "$name.svg.tmp" "$name.svg"
  mv -f "$name.png.tmp" "$name.png"
  echo "rendered $name.svg $name.png"
done
