#!/usr/bin/env bash
# The demo: build api/ with ecrbuild, push it to the local registry with the commit SHA and `latest`,
# start the pushed image and show that it is healthy.
# Usage: bash scripts/demo.sh            (from anywhere; installs what is missing on Debian)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/rig.sh up
eval "$(bash scripts/rig.sh env)"

echo "== building ecrbuild (release)"
cargo build --release --locked 2>&1 | tail -n 1
bin="$root/target/release/ecrbuild"

sha=$(git rev-parse HEAD 2>/dev/null || printf '%040d' 0)
repo=ecrbuild-demo/api
registry=$ECRBUILD_RIG_REGISTRY

echo "== ecrbuild --sha $sha (api/ → $registry/$repo)"
start=$(date +%s%N)
# ecrbuild.toml declares the service `api`; the variable names its repository, as terraform/ does in CodeBuild.
ECRBUILD_SERVICE_REPOSITORIES="api=$repo" "$bin" --sha "$sha" --registry "$registry" --auth none \
  --build-arg "GO_IMAGE=$ECRBUILD_RIG_GO_IMAGE"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "== ecrbuild took ${elapsed_ms} ms"

echo "== the registry now holds:"
curl -fsS "http://$registry/v2/$repo/tags/list"; echo
for tag in "$sha" latest; do
  printf '   %s → %s\n' "$tag" "$(curl -fsSI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$registry/v2/$repo/manifests/$tag" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')"
done

echo "== starting $registry/$repo:$sha"
docker rm -f ecrbuild-demo >/dev/null 2>&1 || true
docker run -d --rm --name ecrbuild-demo -p 127.0.0.1:18080:8080 "$registry/$repo:$sha" >/dev/null
trap 'docker rm -f ecrbuild-demo >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 100); do
  if body=$(curl -fsS http://127.0.0.1:18080/health 2>/dev/null); then
    echo "== GET /health → $body"
    echo "== demo OK"
    exit 0
  fi
  sleep 0.1
done
echo "== the container did not answer /health within 10 s" >&2
docker logs ecrbuild-demo >&2 || true
exit 1
