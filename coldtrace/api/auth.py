"""Who is calling (a bearer API key) and what their role lets them reach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from coldtrace.api.deps import DbSession
from coldtrace.api.keys import Role, lookup
from coldtrace.api.problems import Problem

bearer = HTTPBearer(auto_error=False, description="an API key from `coldtrace keys create`")


@dataclass(frozen=True)
class Principal:
    key_id: int
    role: Role
    customer_id: str | None  # set for (and only for) customer keys

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        who = f"key-{self.key_id}:{self.role.value}"
        return f"{who}:{self.customer_id}" if self.customer_id else who


def authenticate(
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise Problem(401, "send an API key: Authorization: Bearer <key>", challenge)
    row = lookup(session, credentials.credentials)
    if row is None:
        raise Problem(401, "unknown or revoked API key", challenge)
    return Principal(row.id, Role(row.role), row.customer_id)


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Problem(403, f"role {principal.role.value} may not do this (only {allowed})")
        return principal

    return check


Anyone = Annotated[Principal, Depends(authenticate)]
Staff = Annotated[Principal, Depends(allow(Role.admin, Role.quality, Role.dispatcher))]
Operators = Annotated[Principal, Depends(allow(Role.admin, Role.quality))]
Admin = Annotated[Principal, Depends(allow(Role.admin))]
