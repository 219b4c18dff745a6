"""The proxy cannot be reached from another machine, only from loopback (issue 4).

The target shares the controller's network (podman `network: host`), so the "other machine"
is a network namespace this test makes on the controller, joined by a veth pair: the café
neighbour of the threat model. A positive control proves the peer can reach a service that
does listen beyond loopback, so the refusal is the proxy's own doing.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from helpers.converged_host import converged_host

PROXY_PORT = converged_host().proxy_port

NETNS = "ccq-test-peer"
HOST_IF, PEER_IF = "ccqt-host", "ccqt-peer"
HOST_ADDR, PEER_ADDR = "10.213.77.1", "10.213.77.2"
CONTROL_PORT = 18765


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture()
def peer():
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
    sh("ip", "netns", "add", NETNS)
    try:
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", PEER_IF)
        sh("ip", "link", "set", PEER_IF, "netns", NETNS)
        sh("ip", "addr", "add", f"{HOST_ADDR}/30", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{PEER_ADDR}/30", "dev", PEER_IF)
        sh("ip", "netns", "exec", NETNS, "ip", "link", "set", PEER_IF, "up")
        yield
    finally:
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def connect_from_peer(port: int) -> str:
    probe = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(('{HOST_ADDR}', {port}), timeout=3); print('connected')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except OSError as e: print('error', e)\n"
    )
    out = subprocess.run(["ip", "netns", "exec", NETNS, sys.executable, "-c", probe],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def test_proxy_refuses_a_connection_from_another_host(peer):
    control = socket.socket()
    control.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    control.bind(("0.0.0.0", CONTROL_PORT))
    control.listen(1)
    try:
        time.sleep(0.2)
        assert connect_from_peer(CONTROL_PORT) == "connected", "the peer cannot reach this host at all"
    finally:
        control.close()
    assert connect_from_peer(PROXY_PORT) == "refused"
