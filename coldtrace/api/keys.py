"""API keys: 256 random bits shown once, stored only as their SHA-256 (a fast hash is enough
for a key this long: there is nothing to brute-force), each with a role."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from coldtrace.deliveries.models import ApiKey, Customer
from coldtrace.deliveries.store import Conflict, NotFound, Store

KEY_PREFIX = "ct_"


class Role(StrEnum):
    admin = "admin"
    quality = "quality"  # the whole fleet: read and operate, audit log
    dispatcher = "dispatcher"  # deliveries
    customer = "customer"  # one customer's deliveries, traces, breaches, certificates


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    id: int
    key: str  # the only time it exists in clear
    role: Role
    customer_id: str | None


def create_key(
    store: Store, role: Role, customer_id: str | None = None, label: str | None = None
) -> NewKey:
    if (role is Role.customer) != (customer_id is not None):
        raise Conflict("a customer key needs --customer; other roles take none")
    if customer_id is not None and store.session.get(Customer, customer_id) is None:
        raise NotFound("customer", customer_id)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        prefix=key[:10],
        sha256=digest(key),
        role=role,
        customer_id=customer_id,
        label=label,
        created_ms=store.clock(),
    )
    store.insert(
        row,
        "api_key.create",
        "api_key",
        {"role": role.value, "customer_id": customer_id, "label": label, "prefix": row.prefix},
    )
    return NewKey(row.id, key, role, customer_id)


def revoke_key(store: Store, key_id: int) -> ApiKey:
    row = store.session.get(ApiKey, key_id)
    if row is None:
        raise NotFound("api key", key_id)
    if row.revoked_ms is None:
        row.revoked_ms = store.clock()
        store.audit(
            "api_key.revoke",
            "api_key",
            key_id,
            {"revoked_ms": None},
            {"revoked_ms": row.revoked_ms},
        )
    return row


def lookup(session: Session, key: str) -> ApiKey | None:
    """The live key with this secret, or None (unknown or revoked)."""
    row = session.scalars(select(ApiKey).where(ApiKey.sha256 == digest(key))).one_or_none()
    return row if row is not None and row.revoked_ms is None else None


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
