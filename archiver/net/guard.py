"""Private-network guard: which IP addresses an outbound request may connect to."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges that ``ipaddress`` does not already mark as non-global in every Python version.
_EXTRA_FORBIDDEN = tuple(ipaddress.ip_network(net) for net in (
    "100.64.0.0/10",    # carrier-grade NAT
    "192.0.0.0/24",     # IETF protocol assignments
    "198.18.0.0/15",    # benchmarking
    "64:ff9b:1::/48",   # local-use NAT64
))


def forbidden_reason(address: str) -> str | None:
    """Why connecting to ``address`` is refused by default, or None when it is public."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            inner = forbidden_reason(str(embedded))
            if inner:
                return f"{inner} (inside IPv6 {ip})"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    )
    for name, hit in checks:
        if hit:
            return f"{name} address {ip}"
    if any(ip in net for net in _EXTRA_FORBIDDEN if net.version == ip.version):
        return f"non-public address {ip}"
    if not ip.is_global:
        return f"non-global address {ip}"
    return None


def refusal_message(reasons: list[str]) -> str:
    """What a refused connection says: the addresses refused, and the settings that allow them."""
    return (f"{'; '.join(reasons)} refused (set fetch.allow_private_networks = true, or list "
            f"{'it' if len(reasons) == 1 else 'them'} in fetch.allowed_networks, if you trust "
            f"{'it' if len(reasons) == 1 else 'them'})")


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDR networks (``10.1.2.0/24, fd00::/8``); ValueError when malformed."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in text.split(",") if part.strip())


class AddressPolicy:
    """Which addresses outbound requests may connect to."""

    def __init__(self, allow_private: bool,
                 allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()) -> None:
        self.allow_private = allow_private
        self.allowed = allowed

    def refusal(self, address: str) -> str | None:
        """Why ``address`` is refused, or None when it may be connected to."""
        if self.allow_private:
            return None
        reason = forbidden_reason(address)
        if reason is None or not self.allowed:
            return reason
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return reason
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if any((ip in net) or (mapped is not None and mapped in net) for net in self.allowed):
            return None
        return reason
