"""A veth pair from a network namespace to the host, with a default route through it, over rtnetlink.

The same as `ip link add eth0 type veth peer name <host_if> netns <host>`, `ip addr add`, `ip link set up`
and `ip route add default via` on both sides, without running `ip` (~1 ms instead of ~8 ms): netlink
and ioctl sockets act on the network namespace they were created in, so Veths holds a pair made in the
host's namespace, and link() is called from a thread that is in the new one.

Each pair gets a /30 of NETWORK picked by the host-side interface's index, which is unique among the
host's interfaces, so pairs of several servers on one host never share one (as long as fewer than 65,536
interfaces are created on the host while one pair lives).

Beyond the host, packets from NETWORK need the host to forward them and to masquerade them: masquerade()
adds the nftables rules for it where the host already forwards (net.ipv4.ip_forward=1: lambdalet never
turns a host into a router) and has the `nft` command. They are one table, ``ip lambdalet``, the same for
every server (re-made at each start, left in place at exit): NETWORK masqueraded out of the host, and
nothing forwarded into an environment but the replies to its own connections.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import shutil
import socket
import struct
import subprocess

_NLMSG_ERROR = 2
_RTM_NEWLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 20, 24
_F_REQUEST, _F_ACK, _F_EXCL, _F_CREATE = 0x1, 0x4, 0x200, 0x400
_IFLA_IFNAME, _IFLA_LINKINFO, _IFLA_NET_NS_FD = 3, 18, 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTA_OIF, _RTA_GATEWAY = 4, 5
_RT_TABLE_MAIN, _RTPROT_BOOT, _RTN_UNICAST = 254, 3, 1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _SIOCGIFINDEX, _IFF_UP = 0x8913, 0x8914, 0x8933, 0x1
_HEADER = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFREQ_FLAGS = struct.Struct("16sH14x")
_IFREQ_INDEX = struct.Struct("16si12x")
NETWORK = ipaddress.IPv4Network("10.252.0.0/14")
_PREFIX = 30


def _attr(kind: int, payload: bytes) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), kind)
    return head + payload + b"\0" * (-len(payload) % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


_NFT_TABLE = """add table ip lambdalet
flush table ip lambdalet
add chain ip lambdalet postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add rule ip lambdalet postrouting ip saddr {net} oifname != "llet*" masquerade
add chain ip lambdalet forward {{ type filter hook forward priority filter; policy accept; }}
add rule ip lambdalet forward oifname "llet*" ct state established,related accept
add rule ip lambdalet forward oifname "llet*" drop
"""


def masquerade() -> str | None:
    """Let environments reach beyond the host (see the module's docstring): None when done, else why not."""
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            if f.read().strip() != "1":
                return "the host does not forward: net.ipv4.ip_forward=0"
    except OSError:
        return "the host does not forward"
    nft = shutil.which("nft")
    if nft is None:
        return "no nft command for NAT"
    result = subprocess.run([nft, "-f", "-"], input=_NFT_TABLE.format(net=NETWORK).encode(), capture_output=True,
                            close_fds=True, check=False)
    if result.returncode != 0:
        return f"nft failed: {result.stderr.decode(errors='replace').strip()}"
    return None


def link_up(inet: socket.socket, name: str) -> None:
    """Bring interface `name` up, in the network namespace of the socket inet."""
    ifr = _IFREQ_FLAGS.pack(name.encode(), 0)
    flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(inet, _SIOCGIFFLAGS, ifr))[1]
    fcntl.ioctl(inet, _SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name.encode(), flags | _IFF_UP))


class _Rtnl:
    """A netlink route socket, and an ioctl socket, of the calling thread's network namespace."""

    def __init__(self) -> None:
        self.nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self.nl.bind((0, 0))
        self.inet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.seq = 0

    def request(self, kind: int, flags: int, body: bytes) -> None:
        self.seq += 1
        self.nl.send(_HEADER.pack(_HEADER.size + len(body), kind, _F_REQUEST | _F_ACK | flags, self.seq, 0) + body)
        while True:
            data = self.nl.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, msg_type, _, seq, _ = _HEADER.unpack_from(data, offset)
                if msg_type == _NLMSG_ERROR and seq == self.seq:
                    error = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                    if error:
                        raise OSError(error, f"rtnetlink: {os.strerror(error)}")
                    return
                offset += max(length, _HEADER.size)

    def index(self, name: str) -> int:
        return _IFREQ_INDEX.unpack(fcntl.ioctl(self.inet, _SIOCGIFINDEX, _IFREQ_INDEX.pack(name.encode(), 0)))[1]

    def up(self, name: str) -> None:
        link_up(self.inet, name)

    def address(self, name: str, address: str, prefix: int) -> None:
        raw = ipaddress.IPv4Address(address).packed
        body = struct.pack("=BBBBI", socket.AF_INET, prefix, 0, 0, self.index(name))
        self.request(_RTM_NEWADDR, _F_CREATE | _F_EXCL, body + _attr(_IFA_LOCAL, raw) + _attr(_IFA_ADDRESS, raw))

    def close(self) -> None:
        self.nl.close()
        self.inet.close()


class Veths:
    """Makes veth pairs between new namespaces and the one this object was created in (the host's)."""

    def __init__(self, host_netns_fd: int) -> None:
        self.host_netns_fd = host_netns_fd
        self.host = _Rtnl()

    def link(self, host_if: str) -> None:
        """From a thread in the new namespace: its eth0 paired with host_if in the host's, both up with an
        address, and the new namespace's default route via the host's end."""
        ns = _Rtnl()
        try:
            peer = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _name(host_if)) \
                + _attr(_IFLA_NET_NS_FD, struct.pack("=I", self.host_netns_fd))
            info = _attr(_IFLA_INFO_KIND, b"veth") + _attr(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer))
            ns.request(_RTM_NEWLINK, _F_CREATE | _F_EXCL, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                       + _attr(_IFLA_IFNAME, _name("eth0")) + _attr(_IFLA_LINKINFO, info))
            slot = self.host.index(host_if) % (NETWORK.num_addresses >> (32 - _PREFIX))
            base = int(NETWORK.network_address) + (slot << (32 - _PREFIX))
            host_ip, ns_ip = str(ipaddress.IPv4Address(base + 1)), str(ipaddress.IPv4Address(base + 2))
            ns.address("eth0", ns_ip, _PREFIX)
            ns.up("eth0")
            self.host.address(host_if, host_ip, _PREFIX)
            self.host.up(host_if)
            route = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT, 0,
                                _RTN_UNICAST, 0)
            ns.request(_RTM_NEWROUTE, _F_CREATE | _F_EXCL, route
                       + _attr(_RTA_GATEWAY, ipaddress.IPv4Address(host_ip).packed)
                       + _attr(_RTA_OIF, struct.pack("=i", ns.index("eth0"))))
        finally:
            ns.close()

    def close(self) -> None:
        self.host.close()
