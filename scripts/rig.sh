#!/usr/bin/env bash
# The ecrbuild test rig: a real Docker daemon, real registries and moto (the
# AWS stand-in) on this machine. Used by the tests, the demo and CI. Idempotent:
# a second `up` finds everything running and returns in about a second.
#
#   scripts/rig.sh [up]          install what is missing (Debian 12, as root),
#                                start what is not running, build the Go image
#   scripts/rig.sh env           print `export` lines for the tests
#   scripts/rig.sh status        one line per component; exit 1 if any is down
#   scripts/rig.sh down [--all]  stop the registries and moto; --all also stops
#                                the dockerd that `up` started
#
# What runs (all bound to 127.0.0.1):
#   :5000  registry, anonymous
#   :5001  moto (ECR + STS + S3)
#   :5002  registry, htpasswd user AWS / moto's ECR token password ("ECR")
#   :5003  registry, htpasswd user AWS / a different password (auth failures)
# a second dockerd on $STATE/dockerd2/docker.sock with its own data root and
# bridge (ecrb2, 172.29.0.1/16): a second build host, for tests of runs on two
# hosts; the image local/golang:bookworm (Debian's Go 1.19) for api/Dockerfile;
# and, where the machine allows it, QEMU registered with binfmt_misc so that
# arm64 containers run on an amd64 host (tests of multi-platform images).
#
# State, logs and pid files live in ${ECRBUILD_RIG_DIR:-/var/lib/ecrbuild-rig}.
set -euo pipefail

readonly STATE="${ECRBUILD_RIG_DIR:-/var/lib/ecrbuild-rig}"
readonly LOGS="$STATE/logs"
readonly RUN="$STATE/run"
readonly DEBIAN_MIRROR="${ECRBUILD_RIG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# 5.2.5: 5.2.1 answers CompleteMultipartUpload with a root element the AWS SDK rejects (getmoto/moto#10055).
readonly MOTO_VERSION="5.2.5"
readonly MOTO_VENV="$STATE/venv-moto-$MOTO_VERSION"
readonly GO_IMAGE="local/golang:bookworm"
readonly DOCKER_SOCK="/var/run/docker.sock"
readonly DOCKERD2="$STATE/dockerd2"
readonly DOCKER2_SOCK="$DOCKERD2/docker.sock"
readonly DOCKER2_BRIDGE="ecrb2" DOCKER2_BRIDGE_CIDR="172.29.0.1/16"
readonly HOST="127.0.0.1"
readonly ANON_PORT=5000 MOTO_PORT=5001 ECR_PORT=5002 BAD_PORT=5003
readonly REGISTRY_USER="AWS"
readonly BAD_PASSWORD="not-the-ecr-token"
readonly MOTO_URL="http://$HOST:$MOTO_PORT"
readonly PASSWORD_FILE="$STATE/ecr-password"
readonly ROOTFS="$STATE/golang-rootfs"
readonly ROOT_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# ---------------------------------------------------------------- helpers

say() { printf 'rig: %s\n' "$*" >&2; }

# fail MESSAGE [LOGFILE]: print what failed, the log to read and its tail.
fail() {
    printf 'rig: FAILED: %s\n' "$1" >&2
    if [[ -n "${2:-}" ]]; then
        printf 'rig: read %s (last lines below)\n' "$2" >&2
        if [[ -r "$2" ]]; then tail -n 15 "$2" | sed 's/^/rig:   | /' >&2; fi
    fi
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

is_root() { [[ "$(id -u)" == 0 ]]; }

need_root() { is_root || fail "must run as root to $1 (try: sudo $0 up)"; }

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds or time runs out.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# dk: the docker CLI, always against the local engine this rig manages.
dk() { docker -H "unix://$DOCKER_SOCK" "$@"; }

docker_answers() {
    curl -fsS --max-time 2 --unix-socket "$DOCKER_SOCK" -o /dev/null http://localhost/_ping 2>/dev/null
}

# http_code URL [PASSWORD]: the HTTP status, 000 when nothing answers. The
# password goes to curl on stdin, never on a command line.
http_code() {
    local url=$1 code
    if [[ $# -ge 2 ]]; then
        code=$(printf 'user = "%s:%s"\n' "$REGISTRY_USER" "$2" |
            curl -s -o /dev/null -w '%{http_code}' --max-time 3 -K - "$url") || true
    else
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$url") || true
    fi
    printf '%s' "${code:-000}"
}

# port_free PORT: nothing accepts TCP connections on $HOST:PORT.
port_free() { ! (: <>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# alive PID: the process exists and is not a zombie (a container whose init
# does not reap leaves exited daemons as zombies).
alive() { [[ -r "/proc/$1/status" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

pid_gone() { ! alive "$1"; }

# port_taken PORT: the error for a port held by a process the rig did not start.
port_taken() {
    local who=""
    if have ss; then who=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(.*)' | head -n 1); fi
    fail "$HOST:$1 is in use by a process the rig did not start${who:+ ($who)}; stop it and rerun $0 up"
}

# start_bg NAME LOGFILE COMMAND...: run COMMAND detached in its own session,
# record its pid in $RUN/NAME.pid.
start_bg() {
    local name=$1 log=$2
    shift 2
    printf '\n==== %s: starting %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
    rm -f "$RUN/$name.pid"
    # fd 9 is the rig lock: the daemon must not inherit it.
    # shellcheck disable=SC2016 # $$ and $@ expand in the child shell.
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$name.pid" "$@" </dev/null >>"$log" 2>&1 9>&- &
    wait_for 5 test -s "$RUN/$name.pid" || fail "$name did not start" "$log"
}

# running NAME MARKER: the pid of NAME if it runs and its command line
# contains MARKER (so a recycled pid is never mistaken for ours).
running() {
    local pidfile="$RUN/$1.pid" pid
    [[ -s "$pidfile" ]] || return 1
    pid=$(<"$pidfile")
    [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
    printf '%s' "$pid"
}

# stop_bg NAME MARKER [GRACE_SECONDS]: stop what start_bg started.
stop_bg() {
    local pid
    if pid=$(running "$1" "$2"); then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_for "${3:-10}" pid_gone "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "$1: stopped (pid $pid)"
    fi
    rm -f "$RUN/$1.pid"
}

system_python() {
    if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3 || true; fi
}

# ---------------------------------------------------------------- packages

# Debian packages whose commands are missing, one per line.
missing_packages() {
    local py
    py=$(system_python)
    { have docker && have dockerd; } || echo docker.io
    have docker-registry || echo docker-registry
    have htpasswd || echo apache2-utils
    have debootstrap || echo debootstrap
    have go || echo golang-go
    # `go test` (cgo on by default) and cargo's linker need a C toolchain.
    have gcc || printf '%s\n' gcc libc6-dev
    have curl || echo curl
    have ip || echo iproute2
    # An independent client that checks what `ecrbuild export` writes (OCI layouts, docker archives).
    have skopeo || echo skopeo
    [[ -e /etc/ssl/certs/ca-certificates.crt ]] || echo ca-certificates
    if [[ -z "$py" ]] || ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then echo python3-venv; fi
}

ensure_packages() {
    local missing log="$LOGS/apt.log"
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        say "packages: present"
        return
    fi
    if ! have apt-get; then
        fail "missing Debian packages: ${missing[*]}. This rig installs them with apt-get on Debian 12.
rig: elsewhere, install the equivalents yourself: Docker Engine (dockerd + docker CLI, API >= 1.41),
rig: the distribution registry v2 as 'docker-registry' on PATH, htpasswd (bcrypt), debootstrap,
rig: Go >= 1.19, gcc, Python 3 with venv/ensurepip, curl and CA certificates; then rerun $0 up"
    fi
    need_root "install ${missing[*]}"
    say "packages: installing ${missing[*]} (apt-get; log $log)"
    local start=$SECONDS
    # Wait for the dpkg lock: fresh cloud machines often run apt at boot.
    local -a apt=(apt-get -o DPkg::Lock::Timeout=300 -q)
    export DEBIAN_FRONTEND=noninteractive
    "${apt[@]}" update >>"$log" 2>&1 || fail "apt-get update" "$log"
    "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >>"$log" 2>&1 ||
        fail "apt-get install ${missing[*]}" "$log"
    mapfile -t missing < <(missing_packages)
    ((${#missing[@]} == 0)) || fail "still missing after apt-get install: ${missing[*]}" "$log"
    say "packages: installed ($((SECONDS - start)) s)"
}

# Debian's docker-registry package ships a service on :5000 (htpasswd auth,
# all interfaces). It is neither of our registries: stop and disable it.
stop_distro_registry() {
    if [[ -d /run/systemd/system ]] && have systemctl; then
        if systemctl is-active --quiet docker-registry.service 2>/dev/null ||
            systemctl is-enabled --quiet docker-registry.service 2>/dev/null; then
            need_root "stop the docker-registry system service"
            systemctl disable --now docker-registry.service >/dev/null 2>&1 ||
                fail "systemctl disable --now docker-registry.service"
            say "docker-registry.service: stopped and disabled (the rig runs its own registries)"
        fi
    elif [[ -s /var/run/docker-registry.pid ]] && alive "$(</var/run/docker-registry.pid)"; then
        need_root "stop the docker-registry system service"
        service docker-registry stop >/dev/null 2>&1 || /etc/init.d/docker-registry stop >/dev/null 2>&1 ||
            fail "service docker-registry stop"
        say "docker-registry service: stopped (the rig runs its own registries)"
    fi
}

# ---------------------------------------------------------------- dockerd

ensure_dockerd() {
    local log="$LOGS/dockerd.log"
    if docker_answers; then
        say "dockerd: running ($DOCKER_SOCK)"
        return
    fi
    need_root "start dockerd"
    if [[ -d /run/systemd/system ]] && have systemctl && systemctl cat docker.service >/dev/null 2>&1; then
        say "dockerd: starting (systemctl start docker)"
        systemctl start docker.service >>"$log" 2>&1 || true
        wait_for 60 docker_answers ||
            fail "dockerd did not answer on $DOCKER_SOCK within 60 s (journalctl -u docker)" "$log"
    else
        if ! running dockerd dockerd >/dev/null; then
            say "dockerd: starting (log $log)"
            start_bg dockerd "$log" dockerd
        fi
        wait_for 60 docker_answers || fail "dockerd did not answer on $DOCKER_SOCK within 60 s" "$log"
    fi
    dk info >/dev/null 2>>"$log" || fail "docker info" "$log"
    say "dockerd: started"
}

docker2_answers() {
    curl -fsS --max-time 2 --unix-socket "$DOCKER2_SOCK" -o /dev/null http://localhost/_ping 2>/dev/null
}

# A second daemon beside the first, as a second build host: its own state, its own bridge. Never
# `--bridge none`: that deletes the first daemon's docker0.
ensure_dockerd2() {
    local log="$LOGS/dockerd2.log"
    if docker2_answers; then
        say "dockerd2: running ($DOCKER2_SOCK)"
        return
    fi
    need_root "start a second dockerd"
    mkdir -p "$DOCKERD2/data" "$DOCKERD2/exec"
    if ! ip link show "$DOCKER2_BRIDGE" >/dev/null 2>&1; then
        ip link add name "$DOCKER2_BRIDGE" type bridge >>"$log" 2>&1 ||
            fail "ip link add $DOCKER2_BRIDGE" "$log"
        ip addr add "$DOCKER2_BRIDGE_CIDR" dev "$DOCKER2_BRIDGE" >>"$log" 2>&1 ||
            fail "ip addr add $DOCKER2_BRIDGE_CIDR" "$log"
    fi
    ip link set "$DOCKER2_BRIDGE" up >>"$log" 2>&1 || fail "ip link set $DOCKER2_BRIDGE up" "$log"
    if ! running dockerd2 "$DOCKER2_SOCK" >/dev/null; then
        say "dockerd2: starting (log $log)"
        start_bg dockerd2 "$log" dockerd --data-root "$DOCKERD2/data" --exec-root "$DOCKERD2/exec" \
            --pidfile "$DOCKERD2/dockerd.pid" -H "unix://$DOCKER2_SOCK" --bridge "$DOCKER2_BRIDGE" \
            --iptables=false --ip-masq=false
    fi
    wait_for 60 docker2_answers || fail "dockerd2 did not answer on $DOCKER2_SOCK within 60 s" "$log"
    say "dockerd2: started"
}

# ---------------------------------------------------------------- QEMU

binfmt_dir=/proc/sys/fs/binfmt_misc

qemu_registered() { [[ "$(head -n 1 "$binfmt_dir/qemu-aarch64" 2>/dev/null)" == enabled ]]; }

# QEMU for foreign-platform containers (linux/arm64 on amd64): qemu-user-static
# and binfmt-support, binfmt_misc mounted, the interpreters enabled. Optional:
# where it cannot be done (no root, a container without the mount), say so and
# go on; the tests that run arm64 containers then skip that part and say why.
ensure_qemu() {
    local log="$LOGS/qemu.log"
    if qemu_registered; then
        say "qemu: qemu-aarch64 registered ($binfmt_dir)"
        return
    fi
    if [[ "$(uname -m)" != x86_64 ]]; then
        say "qemu: not an x86_64 host; skipped"
        return
    fi
    if ! is_root; then
        say "qemu: NOT registered, and registering needs root (sudo $0 up); arm64 containers will not run here"
        return
    fi
    if ! { have update-binfmts && [[ -e /usr/bin/qemu-aarch64-static ]]; }; then
        say "qemu: installing qemu-user-static binfmt-support (apt-get; log $log)"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q install -y --no-install-recommends \
            qemu-user-static binfmt-support >>"$log" 2>&1 || {
            say "qemu: NOT installed (apt-get failed, see $log); arm64 containers will not run here"
            return
        }
    fi
    if [[ ! -e "$binfmt_dir/status" ]]; then
        mount -t binfmt_misc binfmt_misc "$binfmt_dir" >>"$log" 2>&1 || {
            say "qemu: NOT registered: cannot mount binfmt_misc on $binfmt_dir (a container without the privilege?)"
            return
        }
    fi
    update-binfmts --enable >>"$log" 2>&1 || true
    if qemu_registered; then
        say "qemu: qemu-aarch64 registered"
    else
        say "qemu: NOT registered after update-binfmts --enable (see $log); arm64 containers will not run here"
    fi
}

# ---------------------------------------------------------------- moto

ensure_moto() {
    # One venv per moto version: a rig of another version leaves this one's moto running (its marker
    # is a substring of ours), and ours restarts one it did not start from here.
    local venv="$MOTO_VENV" log="$LOGS/moto.log" any="moto_server -H $HOST -p $MOTO_PORT"
    local marker="$venv/bin/$any"
    local fresh=0 pid py
    if [[ ! -x "$venv/bin/moto_server" || "$(cat "$venv/.rig-moto-version" 2>/dev/null)" != "$MOTO_VERSION" ]]; then
        py=$(system_python)
        say "moto: installing moto[server]==$MOTO_VERSION into $venv (pip; log $LOGS/pip.log)"
        local start=$SECONDS
        rm -rf "$venv"
        "$py" -m venv "$venv" >>"$LOGS/pip.log" 2>&1 || fail "$py -m venv $venv" "$LOGS/pip.log"
        "$venv/bin/pip" install --disable-pip-version-check --no-input "moto[server]==$MOTO_VERSION" \
            >>"$LOGS/pip.log" 2>&1 || fail "pip install moto[server]==$MOTO_VERSION" "$LOGS/pip.log"
        echo "$MOTO_VERSION" >"$venv/.rig-moto-version"
        say "moto: installed ($((SECONDS - start)) s)"
        fresh=1
    fi

    if pid=$(running moto "$marker") && ((fresh == 0)) && moto_answers; then
        say "moto: running ($MOTO_URL, pid $pid)"
        return
    fi
    stop_bg moto "$any"
    port_free "$MOTO_PORT" || port_taken "$MOTO_PORT"
    start_bg moto "$log" "$venv/bin/moto_server" -H "$HOST" -p "$MOTO_PORT"
    wait_for 30 moto_answers || fail "moto did not answer on $MOTO_URL within 30 s" "$log"
    say "moto: started ($MOTO_URL, pid $(<"$RUN/moto.pid"))"
}

moto_answers() { [[ "$(http_code "$MOTO_URL/")" == 200 ]]; }

# The password inside moto's ECR token: GetAuthorizationToken returns
# base64("AWS:<password>"). Asked of the running moto, never assumed.
moto_ecr_password() {
    "$MOTO_VENV/bin/python" - "$MOTO_URL" <<'PY'
import base64, json, sys, urllib.request

request = urllib.request.Request(
    sys.argv[1] + "/",
    data=b"{}",
    method="POST",
    headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        # moto routes on the credential scope and does not check signatures.
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ecr/aws4_request, "
        "SignedHeaders=host, Signature=0",
    },
)
with urllib.request.urlopen(request, timeout=10) as response:
    token = json.load(response)["authorizationData"][0]["authorizationToken"]
user, _, password = base64.b64decode(token).decode().partition(":")
if user != "AWS" or not password:
    sys.exit(f"unexpected ECR token user {user!r}")
print(password)
PY
}

ensure_ecr_password() {
    local password
    password=$(moto_ecr_password 2>>"$LOGS/moto.log") || fail "ECR GetAuthorizationToken against moto" "$LOGS/moto.log"
    if [[ "$(cat "$PASSWORD_FILE" 2>/dev/null)" == "$password" ]]; then
        say "ecr token: moto's password unchanged ($PASSWORD_FILE)"
    else
        printf '%s\n' "$password" >"$PASSWORD_FILE"
        say "ecr token: moto's password saved to $PASSWORD_FILE"
    fi
}

# ---------------------------------------------------------------- registries

# registry_config NAME PORT [HTPASSWD_FILE]
registry_config() {
    cat <<EOF
# Written by scripts/rig.sh; rewritten on every up.
version: 0.1
log:
  level: info
  fields:
    service: registry
    rig: $1
storage:
  filesystem:
    rootdirectory: $STATE/registry/$1/data
  delete:
    enabled: true
http:
  addr: $HOST:$2
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    if [[ -n "${3:-}" ]]; then
        cat <<EOF
auth:
  htpasswd:
    realm: ecrbuild-rig-$1
    path: $3
EOF
    fi
}

# registry_answers PORT [PASSWORD]: /v2/ answers 200 anonymously, or with
# PASSWORD only (401 without).
registry_answers() {
    local url="http://$HOST:$1/v2/"
    if [[ -z "${2:-}" ]]; then
        [[ "$(http_code "$url")" == 200 ]]
    else
        [[ "$(http_code "$url")" == 401 && "$(http_code "$url" "$2")" == 200 ]]
    fi
}

# ensure_registry NAME PORT DESCRIPTION [PASSWORD]: a registry on PORT; with
# PASSWORD, htpasswd auth for user AWS with that password.
ensure_registry() {
    local name=$1 port=$2 what=$3 password=${4:-}
    local dir="$STATE/registry/$name" log="$LOGS/registry-$name.log" changed=0 pid config htpasswd=""
    mkdir -p "$dir/data"
    if [[ -n "$password" ]]; then
        htpasswd="$dir/htpasswd"
        if ! printf '%s' "$password" | htpasswd -vi "$htpasswd" "$REGISTRY_USER" >/dev/null 2>&1; then
            printf '%s' "$password" | htpasswd -iBc "$htpasswd" "$REGISTRY_USER" >>"$log" 2>&1 ||
                fail "htpasswd for registry $name" "$log"
            changed=1
        fi
    fi
    config=$(registry_config "$name" "$port" "$htpasswd")
    if [[ "$(cat "$dir/config.yml" 2>/dev/null)" != "$config" ]]; then
        printf '%s\n' "$config" >"$dir/config.yml"
        changed=1
    fi

    if pid=$(running "registry-$name" "$dir/config.yml") && ((changed == 0)) &&
        registry_answers "$port" "$password"; then
        say "registry $HOST:$port ($what): running (pid $pid)"
        return
    fi
    stop_bg "registry-$name" "$dir/config.yml"
    port_free "$port" || port_taken "$port"
    start_bg "registry-$name" "$log" docker-registry serve "$dir/config.yml"
    wait_for 15 registry_answers "$port" "$password" ||
        fail "registry $name did not answer as expected on $HOST:$port within 15 s" "$log"
    say "registry $HOST:$port ($what): started (pid $(<"$RUN/registry-$name.pid"))"
}

# ---------------------------------------------------------------- Go image

go_image_present() { dk image inspect "$GO_IMAGE" >/dev/null 2>&1; }

ensure_go_image() {
    local log="$LOGS/go-image.log" start=$SECONDS
    if go_image_present; then
        say "go builder image: $GO_IMAGE present"
        return
    fi
    if [[ ! -f "$ROOTFS.complete" ]]; then
        need_root "debootstrap the Go builder image"
        say "go builder image: debootstrap bookworm + golang-go into $ROOTFS (about a minute; log $log)"
        # --one-file-system: never descend into a /proc or /sys left mounted by a killed debootstrap.
        rm -rf --one-file-system "$ROOTFS" "$ROOTFS.tmp"
        debootstrap --variant=minbase --include=golang-go,ca-certificates \
            bookworm "$ROOTFS.tmp" "$DEBIAN_MIRROR" >>"$log" 2>&1 || fail "debootstrap" "$log"
        say "go builder image: debootstrap done ($((SECONDS - start)) s)"
        [[ -x "$ROOTFS.tmp/usr/bin/go" ]] || fail "debootstrap produced no /usr/bin/go" "$log"
        rm -f "$ROOTFS.tmp"/var/cache/apt/archives/*.deb
        mv "$ROOTFS.tmp" "$ROOTFS"
        touch "$ROOTFS.complete"
    fi
    # Import under a scratch tag and move $GO_IMAGE only when the image is
    # complete, so an interrupted run is redone rather than half used.
    local staging="$GO_IMAGE-rig-staging" warm="ecrbuild-rig-go-warm"
    say "go builder image: importing $ROOTFS"
    # docker import sets no environment: give RUN a PATH.
    tar -C "$ROOTFS" --numeric-owner \
        --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' -c . 2>>"$log" |
        dk import --change "ENV PATH=$ROOT_PATH" --change 'CMD ["/bin/bash"]' - "$staging" >>"$log" 2>&1 ||
        fail "docker import $staging" "$log"
    # Compile the standard library once, as api/Dockerfile will (CGO_ENABLED=0,
    # -trimpath), into the default GOCACHE (/root/.cache/go-build): an uncached
    # image build then takes about a second of Go instead of about 40 s.
    say "go builder image: warming the Go build cache (go build std, about 45 s)"
    dk rm -f "$warm" >/dev/null 2>&1 || true
    dk run --name "$warm" --network none "$staging" env CGO_ENABLED=0 go build -trimpath std >>"$log" 2>&1 ||
        fail "'go build std' inside $staging" "$log"
    dk commit --change 'CMD ["/bin/bash"]' "$warm" "$GO_IMAGE" >>"$log" 2>&1 || fail "docker commit $GO_IMAGE" "$log"
    dk rm "$warm" >/dev/null 2>&1 || true
    dk rmi "$staging" >/dev/null 2>&1 || true
    dk run --rm --network none "$GO_IMAGE" go version >>"$log" 2>&1 || fail "'go version' inside $GO_IMAGE" "$log"
    say "go builder image: $GO_IMAGE ready, $(tail -n 1 "$log") ($((SECONDS - start)) s)"
}

# ---------------------------------------------------------------- commands

# Serialise up/down: tests may call `up` concurrently.
take_lock() {
    exec 9>>"$STATE/rig.lock" || fail "cannot open $STATE/rig.lock"
    flock -w 900 9 || fail "another rig.sh held $STATE/rig.lock for 15 minutes"
}

make_state_dir() {
    if ! mkdir -p "$STATE" "$LOGS" "$RUN" 2>/dev/null || [[ ! -w "$STATE" ]]; then
        return 1
    fi
}

cmd_up() {
    local start=$SECONDS
    if ! make_state_dir; then
        # Not root and nothing to do is fine: tests may run as another user.
        if cmd_status >/dev/null 2>&1; then
            say "all up (checked only: $STATE is not writable by $(id -un))"
            return 0
        fi
        is_root || fail "the rig is not (fully) up, and $(id -un) cannot write $STATE: run sudo $0 up (see $0 status)"
        fail "cannot create or write $STATE"
    fi
    take_lock
    umask 022

    ensure_packages
    stop_distro_registry
    ensure_dockerd
    ensure_dockerd2
    ensure_moto
    ensure_ecr_password
    local password
    password=$(<"$PASSWORD_FILE")
    ensure_registry anon "$ANON_PORT" "anonymous"
    ensure_registry ecr "$ECR_PORT" "ECR stand-in, user $REGISTRY_USER" "$password"
    ensure_registry bad "$BAD_PORT" "wrong password, user $REGISTRY_USER" "$BAD_PASSWORD"
    ensure_go_image
    ensure_qemu
    say "up ($((SECONDS - start)) s); load the environment with: eval \"\$($0 env)\""
}

cmd_env() {
    [[ -s "$PASSWORD_FILE" ]] || fail "the rig is not up ($PASSWORD_FILE missing): run $0 up"
    local password
    password=$(<"$PASSWORD_FILE")
    local -a vars=(
        "ECRBUILD_RIG_DIR=$STATE"
        "ECRBUILD_RIG_REGISTRY=$HOST:$ANON_PORT"
        "ECRBUILD_RIG_ECR_REGISTRY=$HOST:$ECR_PORT"
        "ECRBUILD_RIG_BAD_REGISTRY=$HOST:$BAD_PORT"
        "ECRBUILD_RIG_BAD_REGISTRY_PASSWORD=$BAD_PASSWORD"
        "ECRBUILD_RIG_MOTO=$MOTO_URL"
        "ECRBUILD_RIG_GO_IMAGE=$GO_IMAGE"
        "ECRBUILD_RIG_DOCKER_HOST_2=unix://$DOCKER2_SOCK"
        "ECRBUILD_RIG_ECR_PASSWORD=$password"
        "AWS_ACCESS_KEY_ID=testing"
        "AWS_SECRET_ACCESS_KEY=testing"
        "AWS_REGION=us-east-1"
        "AWS_ENDPOINT_URL_ECR=$MOTO_URL"
        "AWS_ENDPOINT_URL_STS=$MOTO_URL"
        "AWS_ENDPOINT_URL_S3=$MOTO_URL"
        "AWS_EC2_METADATA_DISABLED=true"
    )
    local var
    for var in "${vars[@]}"; do
        printf 'export %s=%q\n' "${var%%=*}" "${var#*=}"
    done
}

# report NAME DETAIL COMMAND...: one status line; fails if COMMAND fails.
report() {
    local name=$1 detail=$2
    shift 2
    if "$@"; then
        printf '%-9s up    %s\n' "$name" "$detail"
    else
        printf '%-9s DOWN  %s\n' "$name" "$detail"
        return 1
    fi
}

# auth_registry_ok PORT GOOD_PASSWORD WRONG_PASSWORD
auth_registry_ok() {
    [[ -n "$2" ]] && registry_answers "$1" "$2" &&
        [[ "$(http_code "http://$HOST:$1/v2/" "$3")" == 401 ]]
}

cmd_status() {
    local down=0 password=""
    [[ -r "$PASSWORD_FILE" ]] && password=$(<"$PASSWORD_FILE")

    report dockerd "unix://$DOCKER_SOCK" docker_answers || down=1
    report dockerd2 "unix://$DOCKER2_SOCK (second host)" docker2_answers || down=1
    report registry "$HOST:$ANON_PORT anonymous" registry_answers "$ANON_PORT" || down=1
    report moto "$MOTO_URL" moto_answers || down=1
    report ecr "$HOST:$ECR_PORT htpasswd $REGISTRY_USER / moto's token password" \
        auth_registry_ok "$ECR_PORT" "$password" "$BAD_PASSWORD" || down=1
    report bad "$HOST:$BAD_PORT htpasswd $REGISTRY_USER / $BAD_PASSWORD (rejects the ECR password)" \
        auth_registry_ok "$BAD_PORT" "$BAD_PASSWORD" "${password:-x}" || down=1
    report go-image "$GO_IMAGE" go_image_present || down=1
    # Optional: reported, never counted as down.
    report qemu "qemu-aarch64 in $binfmt_dir (optional: arm64 containers)" qemu_registered || true
    return "$down"
}

cmd_down() {
    local all=0
    case "${1:-}" in
        "") ;;
        --all) all=1 ;;
        *) fail "usage: $0 down [--all]" ;;
    esac
    [[ -d "$RUN" ]] || {
        say "nothing to stop ($RUN does not exist)"
        return 0
    }
    take_lock
    local name
    for name in anon ecr bad; do
        stop_bg "registry-$name" "$STATE/registry/$name/config.yml" &
    done
    stop_bg moto "moto_server -H $HOST -p $MOTO_PORT" &
    wait
    if ((all)); then
        stop_bg dockerd2 "$DOCKER2_SOCK" 30
        if running dockerd dockerd >/dev/null; then
            stop_bg dockerd dockerd 30
        elif docker_answers; then
            say "dockerd: not started by the rig; left running"
        fi
    fi
    say "down"
}

main() {
    local cmd=${1:-up}
    (($# == 0)) || shift
    case "$cmd" in
        up | env | status) (($# == 0)) || fail "'$cmd' takes no arguments" ;;
        *) ;;
    esac
    case "$cmd" in
        up) cmd_up ;;
        env) cmd_env ;;
        status) cmd_status ;;
        down) cmd_down "$@" ;;
        -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
        *) fail "unknown command '$cmd' (use: up, env, status, down [--all])" ;;
    esac
}

main "$@"
