#!/bin/bash
# As the stock image's entrypoint does, in what docker-compose.elk.yml uses: with no command
# (or `eswrapper`), run Elasticsearch with every environment variable whose name has a dot
# as a setting (-Ename=value) and ELASTIC_PASSWORD as the bootstrap password; any other
# command is run as given (the compose file's certs and setup services).
set -euo pipefail
if [[ $# -gt 0 && $1 != eswrapper && $1 != elasticsearch ]]; then
    exec "$@"
fi
[[ $# -gt 0 ]] && shift
settings=()
while IFS='=' read -r -d '' name value; do
    [[ $name =~ ^[a-z0-9_]+\.[a-z0-9_.]+$ ]] && settings+=("-E$name=$value")
done < <(env -0)
if [[ -n ${ELASTIC_PASSWORD:-} ]]; then
    [[ -f config/elasticsearch.keystore ]] || elasticsearch-keystore create >/dev/null
    printf '%s' "$ELASTIC_PASSWORD" | elasticsearch-keystore add -x -f bootstrap.password
fi
exec elasticsearch "${settings[@]}" "$@"
