"""An on-prem cluster of one machine: ``cluster-onprem.yaml`` brought up with ``ray up`` over SSH to
an SSH server of the test's own on this machine (installed with apt-get where it is missing and
the tests run as root), and taken down with ``ray down``."""

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
# This interpreter's own scripts, found whether or not its environment is activated.
SCRIPTS = Path(sys.executable).parent
RAY = str(SCRIPTS / "ray")
# ssh reaches the test's server on its own port through this stdin/stdout-to-TCP relay: Ray's
# cluster config has no SSH port setting, only a ProxyCommand.
RELAY = """import os, socket, sys, threading
connection = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def upstream():
    while data := os.read(0, 65536):
        connection.sendall(data)
    connection.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while data := connection.recv(65536):
    os.write(1, data)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or (process is not None and process.poll() is not None):
                raise TimeoutError(f"nothing listens on port {port}") from None
            time.sleep(0.5)


def _sshd() -> str:
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin")  # /usr/sbin: often off a user's PATH
    if found and shutil.which("rsync"):
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("the on-prem cluster test needs sshd and rsync (apt-get install openssh-server rsync)")
    install = ["apt-get", "install", "-y", "-q", "openssh-server", "rsync"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    return "/usr/sbin/sshd"


@pytest.fixture
def ssh_server(tmp_path):
    """sshd on a free loopback port that lets in only a fresh key; yields (port, key, relay)."""
    sshd = _sshd()
    keys = tmp_path / "ssh"
    keys.mkdir()
    for name in ("client_key", "host_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    shutil.copy(keys / "client_key.pub", keys / "authorized_keys")
    port = free_port()
    (keys / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host_key'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPasswordAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n")
    (keys / "relay.py").write_text(RELAY)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(keys / "sshd_config")], stderr=subprocess.PIPE)
    try:
        wait_for_port(port, 30, server)
    except TimeoutError:
        server.kill()
        pytest.fail(f"sshd did not start: {server.stderr.read().decode()[-2000:]}")
    yield port, keys / "client_key", keys / "relay.py"
    server.kill()
    server.wait()


def onprem_config(tmp_path: Path, ssh_port: int, key: Path, relay: Path) -> tuple[dict, dict]:
    """``cluster-onprem.yaml`` with this machine as the head and everything the test's own: the
    SSH login, free ports, files under ``tmp_path``, and a setup command that checks the installed
    project instead of installing it again. Returns the config and its ports."""
    config = yaml.safe_load((ROOT / "cluster-onprem.yaml").read_text())
    ports = {"gcs": free_port(), "dashboard": free_port(), "mlflow": free_port()}
    remote_home, mounted = tmp_path / "head", tmp_path / "head" / "code-llm-lab"
    remote_home.mkdir()
    config["cluster_name"] = f"onprem-test-{ssh_port}"
    config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    config["auth"] = {"ssh_user": getpass.getuser(), "ssh_private_key": str(key),
                      "ssh_proxy_command": f"{sys.executable} {relay} {ssh_port}"}
    [(_, source)] = config["file_mounts"].items()
    config["file_mounts"] = {str(mounted): str(ROOT / source)}
    path = f"export PATH={SCRIPTS}:{os.environ['PATH']}"
    config["setup_commands"] = [f"{path}; cd {mounted} && python -c 'import ray_jobs, tune.lora_search'"]

    def localized(command: str) -> str:
        replaced = (command.replace("--port=6379", f"--port={ports['gcs']} --dashboard-port={ports['dashboard']}")
                    .replace("--port 5000", f"--port {ports['mlflow']}").replace("$HOME", str(remote_home)))
        return f"{path}; {replaced}"

    config["head_start_ray_commands"] = [localized(command) for command in config["head_start_ray_commands"]]
    started = " ".join(config["head_start_ray_commands"])
    assert all(str(port) in started for port in ports.values()), "cluster-onprem.yaml's ports moved"
    return config, ports


@dataclass(frozen=True)
class OnpremCluster:
    dashboard: str
    mlflow_port: int

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def wait_for_mlflow(self) -> None:
        wait_for_port(self.mlflow_port, 120)


@pytest.fixture
def onprem_cluster(ssh_server, tmp_path):
    """Yields the head that ``ray up`` started (its MLflow server may still be starting). The
    session's local Ray instance is shut down first: the head's start commands run ``ray stop``."""
    ray.shutdown()
    config, ports = onprem_config(tmp_path, *ssh_server)
    config_path = tmp_path / "cluster.yaml"
    config_path.write_text(yaml.safe_dump(config))
    up = subprocess.run([RAY, "up", "-y", "--no-config-cache", str(config_path)], capture_output=True,
                        text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield OnpremCluster(f"http://127.0.0.1:{ports['dashboard']}", ports["mlflow"])
    finally:
        down = subprocess.run([RAY, "down", "-y", str(config_path)], capture_output=True, text=True, timeout=300)
        subprocess.run(["pkill", "-f", f"mlflow server --host 0.0.0.0 --port {ports['mlflow']}"])
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
