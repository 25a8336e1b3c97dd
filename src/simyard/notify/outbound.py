"""The one outbound policy of every notification channel whose target a user chose.

The rule (:meth:`OutboundPolicy.refusal`): a message may go to a public unicast address
only. Loopback, private, link-local, shared (carrier NAT), multicast, reserved and
unspecified addresses, and the cloud metadata services, are refused unless the admin
allows them (``SIMYARD_OUTBOUND_ALLOW``, a list of networks). Addresses that carry an
IPv4 address inside an IPv6 one (``::ffff:127.0.0.1``, 6to4, NAT64) are judged by it.

It is applied twice:

1. :meth:`OutboundPolicy.check_hosts` resolves the host names a target names and refuses
   any that resolves to a forbidden address: when a user saves the target (a 422 naming
   the field) and right before each send (the reason lands in the outbox).
2. :meth:`OutboundPolicy.send` runs the channel's send with every connection checked
   again, by the address actually connected to: an audit hook on ``socket.connect``,
   ``socket.sendto`` and ``socket.sendmsg`` refuses a forbidden address before a packet
   leaves. So a name that resolves to a public address when checked and to 127.0.0.1 a
   moment later (DNS rebinding), a redirect, or a host a chat library picks itself
   (an SMTP relay, an API endpoint) cannot get around the rule. The hook acts only
   inside :meth:`send` (a context variable, which apprise copies into its worker threads);
   the rest of the server (the database, the admin's SMTP server) is not affected.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from simyard.notify.base import Message, Notifier, NotifyError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_SETTING = "SIMYARD_OUTBOUND_ALLOW"
# Metadata services of cloud providers; all are non-global too, listed to be named.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHECKED_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})


class OutboundRefused(PermissionError):
    """A guarded send tried to reach an address the policy forbids.

    An OSError, so HTTP and mail libraries treat it as a failed connection (and try the
    host's next address) rather than crash.
    """


class HostUnresolved(NotifyError):
    """A target's host name has no address (now): nothing to refuse, nothing to send to."""


def parse_allow_list(text: str) -> list[Network]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks."""
    return [
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    ]


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass
class _Guard:
    """The policy in force for one send, and the refusals it made."""

    policy: OutboundPolicy
    refused: list[str] = field(default_factory=list)


_active: contextvars.ContextVar[_Guard | None] = contextvars.ContextVar(
    "simyard_outbound_guard", default=None
)
_hook_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook: refuse a guarded connection to a forbidden address."""
    if event not in _CHECKED_EVENTS:
        return
    guard = _active.get()
    if guard is None:
        return
    sock, address = args[0], args[1]
    reason = guard.policy.connection_refusal(getattr(sock, "family", None), address)
    if reason is not None:
        guard.refused.append(reason)
        raise OutboundRefused(reason)


def _install_hook() -> None:
    """Add the audit hook once per process (audit hooks cannot be removed)."""
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True


class OutboundPolicy:
    """Which addresses a notification may reach; ``allow`` lists the admin's exceptions."""

    def __init__(self, allow: Iterable[Network] = ()) -> None:
        self.allow = list(allow)

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be reached, or None when it may."""
        inner = _embedded_ipv4(address)
        if any(a in network for network in self.allow for a in (address, inner) if a):
            return None
        for candidate in (inner, address):  # the IPv4 address it stands for first
            if candidate is None:
                continue
            if candidate in METADATA:
                return f"{address} is a cloud metadata address"
            if candidate.is_loopback:
                return f"{address} is a loopback address"
            if candidate.is_link_local:
                return f"{address} is a link-local address"
            if candidate.is_multicast:
                return f"{address} is a multicast address"
            if candidate.is_unspecified:
                return f"{address} is the unspecified address"
            if candidate.is_reserved:
                return f"{address} is a reserved address"
            if candidate.is_private:
                return f"{address} is a private address"
            if not candidate.is_global:
                return f"{address} is not a public address"
        return None

    def check_hosts(self, hosts: Iterable[str]) -> None:
        """NotifyError unless every address each host (a name or an address) resolves to may
        be reached."""
        for host in hosts:
            host = host.strip("[]")
            try:
                infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            except (OSError, UnicodeError) as exc:
                raise HostUnresolved(f"cannot resolve {host}: {exc}") from None
            for info in infos:
                reason = self.refusal(ipaddress.ip_address(str(info[4][0]).partition("%")[0]))
                if reason is not None:
                    raise NotifyError(self._refused(host, reason))

    def connection_refusal(self, family: object, address: object) -> str | None:
        """Why a socket of ``family`` may not connect (or send) to ``address``, or None."""
        if family not in (socket.AF_INET, socket.AF_INET6):
            return f"{address!r} is not allowed: a notification may only reach internet addresses"
        host = address[0] if isinstance(address, tuple) and address else address
        try:
            parsed = ipaddress.ip_address(str(host).partition("%")[0])
        except ValueError:
            # Connecting by name would resolve it again, after this check: refuse.
            return self._refused(str(host), "connections must name a checked address")
        reason = self.refusal(parsed)
        return None if reason is None else self._refused(str(host), reason)

    @staticmethod
    def _refused(host: str, reason: str) -> str:
        return f"{host} is not allowed ({reason}); an admin can allow it with {ALLOW_SETTING}"

    def check_target(self, notifier: Notifier, target: str) -> None:
        """NotifyError when ``target`` names a host this policy forbids (checked when a user
        saves it, and before each send)."""
        if notifier.user_targets:
            self.check_hosts(notifier.hosts(target))

    def send(self, notifier: Notifier, message: Message, target: str) -> None:
        """Send through ``notifier`` under this policy: the target's hosts are checked, then
        every connection the send makes is checked by its address.

        NotifyError naming the refused address when the policy stopped a connection, even
        when the channel's library reported a vaguer error (or none).
        """
        if not notifier.user_targets:
            notifier.send(message, target)
            return
        self.check_target(notifier, target)
        _install_hook()
        guard = _Guard(self)
        token = _active.set(guard)
        try:
            notifier.send(message, target)
        except Exception:
            if guard.refused:
                raise NotifyError(guard.refused[0]) from None
            raise
        finally:
            _active.reset(token)
        if guard.refused:
            raise NotifyError(guard.refused[0])
