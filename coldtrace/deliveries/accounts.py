"""Device accounts: a device's (or gateway's) registry row and its broker account, changed
together. The one code path of `coldtrace devices add|list|disable|rotate` and of the API's
``/api/v1/devices`` routes, so the registry and the broker cannot disagree.

The registry row is changed first (a duplicate or unknown id fails before the broker is
touched), then the broker's files, then the broker is told to reload (SIGHUP); the caller
commits. Secrets are returned once and stored nowhere but as the broker's hash.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from coldtrace.broker_accounts import BrokerAccounts, new_secret
from coldtrace.deliveries.models import Device
from coldtrace.deliveries.store import Conflict, NotFound, Store


@dataclass(frozen=True)
class AccountRow:
    """One line of `coldtrace devices list`: ``state`` is ``active`` (may log in),
    ``disabled`` (refused, row kept) or ``no login`` (registered, but the broker has no
    account for it: add it again or rotate to give it one)."""

    device: Device
    state: str


class DeviceAccounts:
    """``reserved``: the broker's own accounts (ingest, its alert publisher, monitor), which
    no device may be named after."""

    def __init__(self, store: Store, broker: BrokerAccounts, reserved: Collection[str]) -> None:
        self.store = store
        self.broker = broker
        self.reserved = reserved
        # Whether the last change reached a running broker (False: it reads the files at its
        # next start or SIGHUP).
        self.reloaded = False

    def add(
        self,
        device_id: str,
        label: str | None = None,
        carries: Sequence[str] | None = None,
    ) -> tuple[Device, str]:
        """Register a device with a new broker password; a gateway when ``carries`` names the
        boxes it publishes for (registered devices, not gateways). Returns the row and the
        password, which is shown once."""
        if device_id in self.reserved:
            raise Conflict(f"{device_id!r} is one of the broker's own accounts: pick another id")
        if carries is not None:
            carries = list(dict.fromkeys(carries))  # each box once
            self._check_boxes(device_id, carries)
        row = self.store.create_device(device_id, label)
        if carries is not None:
            row.carries = carries
            self.store.audit("device.carries", "device", device_id, None, {"carries": carries})
        secret = new_secret()
        self.broker.set_passwords({device_id: secret})
        if carries is not None:
            self.broker.set_gateway(device_id, carries)
        self.reloaded = self.broker.reload()
        return row, secret

    def rotate(self, device_id: str) -> str:
        """A new broker password for the device; the old one fails from the broker's reload
        on. Returns the new password (shown once). A disabled device stays disabled."""
        row = self._get(device_id)
        if row.disabled_ms is not None:
            raise Conflict(f"device {device_id!r} is disabled: its login stays refused")
        secret = new_secret()
        self.store.audit("device.rotate", "device", device_id, None, {"credential": "new"})
        self.broker.set_passwords({device_id: secret})
        if row.carries is not None:  # a gateway whose ACL lines were lost gets them back
            self.broker.set_gateway(device_id, row.carries)
        self.reloaded = self.broker.reload()
        return secret

    def disable(self, device_id: str) -> Device:
        """Refuse the device's login from the broker's reload on; its row, assignments and
        readings stay (the audit log says who disabled it, when)."""
        row = self._get(device_id)
        if row.disabled_ms is None:
            row.disabled_ms = self.store.clock()
            self.store.audit(
                "device.disable", "device", device_id, None, {"disabled_ms": row.disabled_ms}
            )
        self.broker.remove(device_id)
        self.reloaded = self.broker.reload()
        return row

    def list(self) -> list[AccountRow]:
        """Every registered device and gateway, by id, with its login state."""
        logins = self.broker.usernames()
        rows = self.store.session.scalars(select(Device).order_by(Device.id))
        return [AccountRow(d, _state(d, d.id in logins)) for d in rows]

    def state(self, device: Device) -> str:
        """The login state of one registered device (see AccountRow)."""
        return _state(device, device.id in self.broker.usernames())

    def _get(self, device_id: str) -> Device:
        row = self.store.session.get(Device, device_id)
        if row is None:
            raise NotFound("device", device_id)
        return row

    def _check_boxes(self, gateway: str, boxes: Sequence[str]) -> None:
        if not boxes:
            raise Conflict(f"gateway {gateway!r} carries no box: name at least one")
        for box in boxes:
            row = self.store.session.get(Device, box)
            if row is None:
                raise Conflict(f"box {box!r} is not registered: add it first")
            if row.carries is not None:
                raise Conflict(f"{box!r} is a gateway: a gateway carries boxes only")


def _state(device: Device, has_login: bool) -> str:
    if device.disabled_ms is not None:
        return "disabled"
    return "active" if has_login else "no login"
