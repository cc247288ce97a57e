#!/usr/bin/env bash
# The test bed: a real Docker engine and a real Elasticsearch server on this host.
#
#   scripts/testbed.sh up       start what is missing (idempotent), build the test image;
#                               also a TLS + security node on 127.0.0.1:9201 (SHIPPER_TESTBED_SECURE=0: not)
#   scripts/testbed.sh down     stop what `up` started, delete the test server's data
#   scripts/testbed.sh status   say what answers, and which versions
#   scripts/testbed.sh es-stop | es-start   stop/start only Elasticsearch, keeping its data
#   scripts/testbed.sh tight-up | tight-down  a node on 127.0.0.1:9202 with a write pool of one
#                               thread and one queue slot (the per-item 429 test starts it)
#
# Docker: the engine that answers is used as is; otherwise Debian's docker.io is
# installed if needed and dockerd started with no bridge network and no iptables.
# Elasticsearch: ES_URL (with ES_USERNAME/ES_PASSWORD or ES_API_KEY) if set;
# otherwise the official distribution zip from Maven Central, cached outside the
# repository, run as an unprivileged user on 127.0.0.1:9200 with a 512 MB heap.
# Only processes this script started (recorded by PID in $STATE) are ever stopped.
set -euo pipefail

STATE=${SHIPPER_TESTBED_DIR:-/var/lib/shipper-testbed}
CACHE=${SHIPPER_TESTBED_CACHE:-/var/cache/shipper-testbed}
ES_VERSION=${SHIPPER_TESTBED_ES_VERSION:-8.19.21}
ES_USER=shipper-es
ES_LOCAL_URL=http://127.0.0.1:9200
MAVEN=https://repo1.maven.org/maven2/org/elasticsearch/distribution/integ-test-zip/elasticsearch
TEST_IMAGE=${SHIPPER_TEST_IMAGE:-shipper-testbed/busybox:1}

say() { printf '[testbed] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

wait_for() { # seconds description command...
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { say "$what: gave up waiting"; return 1; }
        sleep 0.5
    done
}

apt_install() { # package...
    say "installing Debian packages: $*"
    if [[ ! -f "$STATE/.apt-updated" ]]; then
        apt-get update -qq >&2 && mkdir -p "$STATE" && touch "$STATE/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# ------------------------------------------------------------------ docker

docker_up() {
    if docker info >/dev/null 2>&1; then
        say "docker: using the engine that answers ($(docker version -f '{{.Server.Version}}'))"
    else
        command -v dockerd >/dev/null || apt_install docker.io
        mkdir -p "$STATE"
        say "docker: starting dockerd --bridge=none --iptables=false (log: $STATE/dockerd.log)"
        nohup dockerd --bridge=none --iptables=false --ip-masq=false \
            --pidfile "$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 &
        wait_for 60 dockerd docker info || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd did not answer within 60s"; }
        say "docker: engine $(docker version -f '{{.Server.Version}}') (API $(docker version -f '{{.Server.APIVersion}}')) answering"
    fi
    test_image_up
    python_base_up
}

# A Debian base with python3 for building the shipper's own image (no registry here):
# debootstrap once (about a minute), cached as a tarball, imported into the engine.
PYTHON_BASE=${SHIPPER_PYTHON_BASE:-shipper-testbed/python-base:bookworm}
python_base_up() {
    if docker image inspect "$PYTHON_BASE" >/dev/null 2>&1; then
        say "docker: python base $PYTHON_BASE present"
        return
    fi
    local tarball=$CACHE/python-base-bookworm.tar.gz
    if [[ ! -s $tarball ]]; then
        command -v debootstrap >/dev/null || apt_install debootstrap
        local root
        root=$(mktemp -d)
        say "docker: debootstrap of Debian bookworm with python3 (log: $STATE/debootstrap.log)"
        debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" http://deb.debian.org/debian \
            > "$STATE/debootstrap.log" 2>&1 || { say "ERROR: debootstrap failed, see $STATE/debootstrap.log"; rm -rf "$root"; return 1; }
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        mkdir -p "$CACHE"
        tar -C "$root" -czf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
    fi
    docker import --change 'CMD ["python3"]' "$tarball" "$PYTHON_BASE" >/dev/null
    say "docker: imported $PYTHON_BASE from $tarball"
}

test_image_up() {
    # Debian's docker-compose 1.29 validates docker-compose.elk.yml (tests/integration/test_deploy_files.py)
    command -v docker-compose >/dev/null || apt_install docker-compose
    # the scenario suite compiles a static helper (tests/scenarios/memfd_exec.c)
    command -v gcc >/dev/null && [[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/aarch64-linux-gnu/libc.a ]] \
        || apt_install gcc libc6-dev
    if docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
        say "docker: test image $TEST_IMAGE present"
        return
    fi
    [[ -x /bin/busybox ]] && /bin/busybox --list >/dev/null 2>&1 && ldd /bin/busybox 2>&1 | grep -q 'not a dynamic' \
        || apt_install busybox-static
    local root
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root,var/log,app,data}
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
    tar -C "$root" -c . | docker import \
        --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' \
        --change 'LABEL org.opencontainers.image.title=shipper-testbed-busybox' \
        - "$TEST_IMAGE" >/dev/null
    rm -rf "$root"
    say "docker: built test image $TEST_IMAGE from busybox-static"
}

docker_down() {
    if pid_alive "$STATE/dockerd.pid"; then
        local pid
        pid=$(cat "$STATE/dockerd.pid")
        say "docker: stopping the dockerd this script started (pid $pid)"
        kill "$pid"
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) still running after 30s"
    fi
    rm -f "$STATE/dockerd.pid"
}

# ------------------------------------------------------------------ elasticsearch image

# A stand-in for the official Elasticsearch image (no registry here), tagged with the name
# docker-compose.elk.yml uses, so the compose test can run certs, elasticsearch and setup
# unchanged: the distribution zip (with the bed's analysis plugin) on the python base,
# Java 17 and curl/unzip (with their libraries) copied from this Debian host.
ES_IMAGE=docker.elastic.co/elasticsearch/elasticsearch:$ES_VERSION
es_image_up() {
    local label
    label=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.title"}}' "$ES_IMAGE" 2>/dev/null || true)
    if [[ $label == shipper-testbed-elasticsearch-standin ]]; then
        say "docker: Elasticsearch stand-in $ES_IMAGE present"
        return
    fi
    [[ -z $label ]] || die "$ES_IMAGE exists and is not the bed's stand-in; not replacing it"
    local home java context file lib
    home=$(es_fetch)
    java=$(find_java)
    analysis_plugin_install "$home"
    command -v unzip >/dev/null || apt_install unzip
    context=$(mktemp -d)
    cp "$(dirname "${BASH_SOURCE[0]}")"/testbed/elasticsearch-image/{Dockerfile,docker-entrypoint.sh} "$context/"
    cp -a "$home" "$context/elasticsearch"
    printf 'cluster.name: docker-cluster\nnetwork.host: 127.0.0.1\n' >"$context/elasticsearch/config/elasticsearch.yml"
    mkdir -p "$context/elasticsearch/data" "$context/elasticsearch/logs" "$context/java" "$context/hostfiles"
    for file in bin conf lib release; do cp -r "$java/$file" "$context/java/"; done
    # Debian links parts of the JDK to /etc and /usr/share: copy what the links point to
    find "$context/java" -type l -print0 | while IFS= read -r -d "" link; do
        if [[ -e $link ]]; then cp -L --remove-destination "$link" "$link.tmp" && mv "$link.tmp" "$link"; else rm "$link"; fi
    done
    for file in /usr/bin/curl /usr/bin/unzip; do
        cp --parents -L "$file" "$context/hostfiles/"
        for lib in $(ldd "$file" | grep -o '/[^ ]*\.so[^ ]*'); do cp --parents -L "$lib" "$context/hostfiles/"; done
    done
    say "docker: building the Elasticsearch stand-in $ES_IMAGE (no network)"
    docker build -q --network none --build-arg "BASE_IMAGE=$PYTHON_BASE" -t "$ES_IMAGE" "$context" >/dev/null \
        || { rm -rf "$context"; die "building $ES_IMAGE failed"; }
    rm -rf "$context"
}

# ------------------------------------------------------------------ elasticsearch

curl_es() { # path [curl args...]
    local url=${ES_URL:-$ES_LOCAL_URL} path=$1; shift
    local auth=()
    [[ -n ${ES_USERNAME:-} ]] && auth=(-u "$ES_USERNAME:${ES_PASSWORD:-}")
    [[ -n ${ES_API_KEY:-} ]] && auth=(-H "Authorization: ApiKey $ES_API_KEY")
    curl -fsS -m 5 ${ES_CA_FILE:+--cacert "$ES_CA_FILE"} "${auth[@]}" "$@" "$url$path"
}

es_healthy() { curl_es '/_cluster/health?wait_for_status=yellow&timeout=1s' 2>/dev/null | grep -q '"status":"\(green\|yellow\)"'; }

es_version() { curl_es '/_nodes/_local?filter_path=nodes.*.version' | grep -o '"version":"[^"]*"' | head -1 | cut -d'"' -f4; }

find_java() {
    local candidate
    for candidate in "${ES_JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-21-openjdk-amd64 \
        /usr/lib/jvm/temurin-21-jdk-amd64 /usr/lib/jvm/temurin-25-jdk-amd64; do
        [[ -n $candidate && -x $candidate/bin/java ]] && { echo "$candidate"; return; }
    done
    apt_install openjdk-17-jre-headless
    echo /usr/lib/jvm/java-17-openjdk-amd64
}

es_fetch() {
    local zip="$CACHE/elasticsearch-$ES_VERSION.zip" home="$CACHE/elasticsearch-$ES_VERSION"
    mkdir -p "$CACHE"
    if [[ ! -f $zip ]]; then
        command -v curl >/dev/null || apt_install curl ca-certificates
        say "elasticsearch: downloading $ES_VERSION from Maven Central (integ-test-zip, ~100 MB)"
        curl -fsSL -m 900 -o "$zip.part" "$MAVEN/$ES_VERSION/elasticsearch-$ES_VERSION.zip"
        local want
        want=$(curl -fsSL -m 60 "$MAVEN/$ES_VERSION/elasticsearch-$ES_VERSION.zip.sha1")
        echo "$want  $zip.part" | sha1sum -c --quiet - || die "checksum mismatch for $zip.part"
        mv "$zip.part" "$zip"
    fi
    if [[ ! -x $home/bin/elasticsearch ]]; then
        command -v unzip >/dev/null || apt_install unzip
        rm -rf "$home.tmp" && mkdir -p "$home.tmp"
        unzip -q "$zip" -d "$home.tmp"
        mv "$home.tmp/elasticsearch-$ES_VERSION" "$home" && rm -rf "$home.tmp"
        chmod -R o+rX "$home"
    fi
    echo "$home"
}

# The zip lacks the analysis-common module, whose uax_url_email tokenizer and unique and
# pattern_capture filters the .security index needs: without them no native users and no
# API keys. A small plugin (scripts/testbed/analysis-plugin/, test bed only) registers those
# three over the Lucene classes in the zip's own lib/. Compiled once per version and cached.
ANALYSIS_PLUGIN=testbed-analysis
analysis_plugin_install() { # es_home
    local home=$1 src
    src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/testbed/analysis-plugin
    local built="$CACHE/$ANALYSIS_PLUGIN-$ES_VERSION" sum
    sum=$(cat "$src"/src/org/shipper/testbed/*.java | sha256sum | cut -c1-16)
    if [[ ! -f $built/$sum ]]; then
        command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
        say "elasticsearch: compiling the test bed's analysis plugin ($src)"
        local classes
        classes=$(mktemp -d)
        javac --release 17 -nowarn -cp "$home/lib/*" -d "$classes" "$src"/src/org/shipper/testbed/*.java >&2
        rm -rf "$built" && mkdir -p "$built"
        jar cf "$built/$ANALYSIS_PLUGIN.jar" -C "$classes" .
        rm -rf "$classes"
        {
            echo "name=$ANALYSIS_PLUGIN"
            echo "description=test bed only: uax_url_email, unique, pattern_capture for the .security index"
            echo "version=$ES_VERSION"
            echo "classname=org.shipper.testbed.TestbedAnalysisPlugin"
            echo "java.version=17"
            echo "elasticsearch.version=$ES_VERSION"
        } >"$built/plugin-descriptor.properties"
        touch "$built/$sum"
    fi
    rm -rf "$home/plugins/$ANALYSIS_PLUGIN" && mkdir -p "$home/plugins/$ANALYSIS_PLUGIN"
    cp "$built/$ANALYSIS_PLUGIN.jar" "$built/plugin-descriptor.properties" "$home/plugins/$ANALYSIS_PLUGIN/"
    chmod -R o+rX "$home/plugins"
}

# One Elasticsearch node from the zip, in its own directory (config, data, logs, pid).
node_prepare() { # dir -> sets ES_HOME and JAVA, a fresh config dir copied from the zip
    local dir=$1
    ES_HOME=$(es_fetch)
    JAVA=$(find_java)
    analysis_plugin_install "$ES_HOME"
    id -u "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
    mkdir -p "$dir/data" "$dir/logs"
    rm -rf "$dir/config" && cp -r "$ES_HOME/config" "$dir/config"
}

node_start() { # dir label health-function
    local dir=$1 label=$2 healthy=$3
    chown -R "$ES_USER" "$dir"
    say "$label: starting $ES_VERSION (java: $JAVA, heap 512m, data: $dir/data)"
    if ! runuser -u "$ES_USER" -- env ES_PATH_CONF="$dir/config" ES_JAVA_HOME="$JAVA" \
        ES_JAVA_OPTS="-Xms512m -Xmx512m" "$ES_HOME/bin/elasticsearch" -d -p "$dir/es.pid" >"$dir/start.log" 2>&1; then
        tail -30 "$dir/start.log" >&2
        die "$label failed to start (see $dir/logs)"
    fi
    wait_for 120 "$label" "$healthy" || { tail -30 "$dir"/logs/*.log >&2; die "$label not healthy within 120s"; }
}

node_stop() { # dir label: stop the node this script started, by its PID
    local dir=$1 label=$2 pid
    pid_alive "$dir/es.pid" || { rm -f "$dir/es.pid"; return 0; }
    pid=$(cat "$dir/es.pid")
    say "$label: stopping the server this script started (pid $pid)"
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; say "$label: killed after 30s"; }
    rm -f "$dir/es.pid"
}

# A second node with security on: TLS on HTTP (our own CA), a file-realm admin and a
# file-realm writer that may only create documents in logs-shipper.*. For the tests
# of TLS, authentication and least privilege. Its CA, admin
# password and URL are in $STATE/es-secure/ for the tests to read.
SECURE_PORT=${SHIPPER_TESTBED_SECURE_PORT:-9201}
SECURE_ADMIN=shipper-admin

secure_healthy() {
    local dir="$STATE/es-secure"
    [[ -f $dir/admin-password ]] || return 1
    curl -fsS -m 5 --cacert "$dir/ca.pem" -u "$SECURE_ADMIN:$(cat "$dir/admin-password")" \
        "https://127.0.0.1:$SECURE_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null | grep -q '"status"'
}

secure_certs() {
    local certs=$1
    [[ -f $certs/node.pem ]] && return
    mkdir -p "$certs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shipper-testbed-ca" \
        -keyout "$certs/ca.key" -out "$certs/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$certs/node.key" -out "$certs/node.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$certs/san.ext"
    openssl x509 -req -in "$certs/node.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" -CAcreateserial \
        -days 3650 -extfile "$certs/san.ext" -out "$certs/node.pem" 2>/dev/null
}

secure_has_api_keys() { # the node runs with the analysis plugin (else: no .security index)
    local dir="$STATE/es-secure"
    curl -fsS -m 5 --cacert "$dir/ca.pem" -u "$SECURE_ADMIN:$(cat "$dir/admin-password")" \
        "https://127.0.0.1:$SECURE_PORT/_cat/plugins?h=component" 2>/dev/null | grep -qx "$ANALYSIS_PLUGIN"
}

secure_up() {
    [[ -z ${ES_URL:-} && ${SHIPPER_TESTBED_SECURE:-1} == 1 ]] || return 0
    local dir="$STATE/es-secure"
    if secure_healthy; then
        if secure_has_api_keys || ! pid_alive "$dir/es.pid"; then
            say "elasticsearch (TLS, security): https://127.0.0.1:$SECURE_PORT already answering"
            return
        fi
        say "elasticsearch (TLS, security): restarting it with the analysis plugin (API keys, native users)"
        node_stop "$dir" "elasticsearch (TLS)"
    fi
    node_prepare "$dir"
    secure_certs "$dir/certs"
    cp -r "$dir/certs" "$dir/config/certs"
    cp "$dir/certs/ca.pem" "$dir/ca.pem"
    {
        echo "cluster.name: shipper-testbed-secure"
        echo "node.name: testbed-secure"
        echo "network.host: 127.0.0.1"
        echo "http.port: $SECURE_PORT"
        echo "transport.port: $((SECURE_PORT + 100))"
        echo "discovery.type: single-node"
        echo "path.data: $dir/data"
        echo "path.logs: $dir/logs"
        echo "cluster.routing.allocation.disk.threshold_enabled: false"
        echo "xpack.security.enabled: true"
        echo "xpack.security.http.ssl.enabled: true"
        echo "xpack.security.http.ssl.certificate: certs/node.pem"
        echo "xpack.security.http.ssl.key: certs/node.key"
        echo "xpack.security.http.ssl.certificate_authorities: [certs/ca.pem]"
        echo "xpack.security.transport.ssl.enabled: false"
        echo "xpack.security.authc.api_key.enabled: true"
    } >"$dir/config/elasticsearch.yml"
    # File-realm users and roles (native users and API keys work too, with the analysis plugin).
    printf 'shipper_writer:\n  indices:\n    - names: ["logs-shipper.*"]\n      privileges: ["create_doc", "auto_configure"]\n' \
        >>"$dir/config/roles.yml"
    for user in admin writer; do
        [[ -f $dir/$user-password ]] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$dir/$user-password"
    done
    ES_PATH_CONF="$dir/config" ES_JAVA_HOME="$JAVA" "$ES_HOME/bin/elasticsearch-users" useradd "$SECURE_ADMIN" \
        -p "$(cat "$dir/admin-password")" -r superuser >/dev/null
    ES_PATH_CONF="$dir/config" ES_JAVA_HOME="$JAVA" "$ES_HOME/bin/elasticsearch-users" useradd shipper-writer \
        -p "$(cat "$dir/writer-password")" -r shipper_writer >/dev/null
    echo "https://127.0.0.1:$SECURE_PORT" >"$dir/url"
    node_start "$dir" "elasticsearch (TLS, security)" secure_healthy
    say "elasticsearch (TLS, security): answering; CA $dir/ca.pem, admin $SECURE_ADMIN (password in $dir/admin-password)"
}

secure_down() {
    node_stop "$STATE/es-secure" "elasticsearch (TLS)"
    rm -rf "$STATE/es-secure/data"
}

plain_node_config() { # dir node-name http-port: one node on loopback, security off
    local dir=$1 name=$2 port=$3
    cat <<EOF
cluster.name: shipper-$name
node.name: $name
network.host: 127.0.0.1
http.port: $port
transport.port: $((port + 100))
discovery.type: single-node
path.data: $dir/data
path.logs: $dir/logs
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
xpack.security.enabled: false
EOF
}

es_up() {
    if [[ -n ${ES_URL:-} ]]; then
        es_healthy || die "ES_URL=$ES_URL does not answer /_cluster/health"
        say "elasticsearch: using ES_URL=$ES_URL, version $(es_version)"
        return
    fi
    if es_healthy; then
        say "elasticsearch: $ES_LOCAL_URL already answering, version $(es_version)"
        return
    fi
    local dir="$STATE/es"
    node_prepare "$dir"
    plain_node_config "$dir" testbed 9200 >"$dir/config/elasticsearch.yml"
    node_start "$dir" elasticsearch es_healthy
    say "elasticsearch: version $(es_version) answering at $ES_LOCAL_URL"
}

es_stop() { # stop the server this script started, keep its data (outage tests)
    node_stop "$STATE/es" elasticsearch
}

es_down() {
    es_stop
    rm -rf "$STATE/es/data"
}

# A third node, started only by the test that needs it: one write thread and a write
# queue of one, so concurrent bulks get some of their items rejected with 429.
TIGHT_PORT=${SHIPPER_TESTBED_TIGHT_PORT:-9202}

tight_healthy() {
    curl -fsS -m 5 "http://127.0.0.1:$TIGHT_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null \
        | grep -q '"status"'
}

tight_up() {
    [[ -z ${ES_URL:-} ]] || die "ES_URL is set: the tight node is a local test server only"
    tight_healthy && { say "elasticsearch (tight write pool): already answering on $TIGHT_PORT"; return; }
    local dir="$STATE/es-tight"
    node_prepare "$dir"
    {
        plain_node_config "$dir" testbed-tight "$TIGHT_PORT"
        echo "thread_pool.write.size: 1"
        echo "thread_pool.write.queue_size: 1"
    } >"$dir/config/elasticsearch.yml"
    node_start "$dir" "elasticsearch (tight write pool)" tight_healthy
}

tight_down() {
    node_stop "$STATE/es-tight" "elasticsearch (tight write pool)"
    rm -rf "$STATE/es-tight/data"
}

status() {
    local rc=0
    if docker info >/dev/null 2>&1; then
        say "docker: engine $(docker version -f '{{.Server.Version}}') answering; test image: $(docker image inspect -f '{{.Id}}' "$TEST_IMAGE" 2>/dev/null || echo missing)"
    else
        say "docker: not answering"; rc=1
    fi
    if es_healthy; then
        say "elasticsearch: ${ES_URL:-$ES_LOCAL_URL} version $(es_version) answering"
    else
        say "elasticsearch: ${ES_URL:-$ES_LOCAL_URL} not answering"; rc=1
    fi
    return $rc
}

[[ $(id -u) == 0 || ${1:-} == status ]] || die "run as root: the bed starts dockerd and creates the $ES_USER user"
case ${1:-} in
    up) docker_up; es_up; secure_up; es_image_up ;;
    down) tight_down; secure_down; es_down; docker_down ;;
    status) status ;;
    es-stop) [[ -z ${ES_URL:-} ]] || die "ES_URL is set: not our server to stop"; es_stop ;;
    es-start) es_up ;;
    tight-up) tight_up ;;
    tight-down) tight_down ;;
    *) echo "usage: $0 up|down|status|es-stop|es-start|tight-up|tight-down" >&2; exit 2 ;;
esac
