"""Every route that is not public refuses strangers (401) and the wrong role or hall (403)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from queue_server.service import accounts
from queue_server.service.bus import Bus
from tests.support import ALL_DAY, Staff, build_hall, call_as, login

ALL_ROLES = ("admin", "manager", "clerk", "kiosk", "board", "printer")
# Routes meant for every signed-in role or device; the hall scope still applies.
OPEN_TO_ALL_ROLES = {
    ("GET", "/api/auth/me"),
    ("GET", "/api/halls/{hall_id:int}/snapshot"),
    ("GET", "/api/halls/{hall_id:int}/alerts"),
}
PUBLIC_ROUTES = {
    ("POST", "/api/auth/login"),
    ("GET", "/api/public/halls"),
    ("GET", "/api/public/halls/{hall_id:int}"),
    ("GET", "/api/follow/{token:str}"),
    ("GET", "/t/{token:str}"),
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    # Operators' scrapers; with ONEDOOR_METRICS_TOKEN set it asks for that token itself.
    ("GET", "/metrics"),
    # Online booking: a visitor has no account; the code and phone number are the key.
    ("GET", "/api/public/halls/{hall_id:int}/services/{service_id:int}/slots"),
    ("POST", "/api/public/halls/{hall_id:int}/bookings"),
    ("GET", "/api/bookings/{code:str}"),
    ("POST", "/api/bookings/{code:str}/cancel"),
    ("POST", "/api/bookings/{code:str}/reschedule"),
    ("POST", "/api/bookings/{code:str}/check-in"),
    ("POST", "/api/bookings/{code:str}/erase"),
    ("GET", "/b/{code:str}"),
    # The pages: HTML shells with no data; what they show comes through the guarded API.
    ("GET", "/kiosk/{hall_id:int}"),
    ("GET", "/counter"),
    ("GET", "/book"),
    ("GET", "/book/manage"),
    ("GET", "/admin"),
    ("GET", "/qr.svg"),
    ("POST", "/api/follow/{token:str}/rating"),
}


def guarded_routes(app: Litestar) -> list[tuple[str, str, frozenset[str]]]:
    """(method, path, roles) for every route handler, public ones checked against the list."""
    found = []
    public = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(("/schema", "/static")):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if method in ("OPTIONS", "HEAD"):
                continue
            if handler.opt.get("public"):
                public.add((method, route.path))
                continue
            roles = handler.opt.get("roles")
            assert roles, f"{method} {route.path} declares neither roles nor public"
            found.append((method, route.path, roles))
    assert public == PUBLIC_ROUTES, "a route became public (or stopped being): review it"
    return found


def fill(path: str, ids: dict[str, int]) -> str:
    def value(m: re.Match[str]) -> str:
        if m.group(2) == "date":  # a day in the path (a daily report's)
            return "2026-03-02"
        return str(ids.get(m.group(1), 1))

    return re.sub(r"\{(\w+):(\w+)\}", value, path)


async def test_every_route_refuses_strangers_and_wrong_roles(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    other = await call_as(
        client, hall.admin, "POST", "/api/halls",
        json={"name_zh": "别的大厅", "name_en": "Other hall", "opening_hours": ALL_DAY},
    )  # fmt: skip
    other_id = other.json()["id"]
    await bus.run(
        accounts.create_user, "elsewhere", "elsewhere-pw", accounts.Role.MANAGER, other_id
    )
    outsider = await login(client, "elsewhere", "elsewhere-pw")
    tokens = {"kiosk": hall.kiosk_token, "board": hall.board_token}
    printer = await call_as(
        client, hall.admin, "POST", f"/api/halls/{hall.hall_id}/devices",
        json={"kind": "printer", "name": "p"},
    )  # fmt: skip
    tokens["printer"] = printer.json()["token"]
    users: dict[str, Staff] = {
        "admin": hall.admin,
        "manager": hall.manager,
        "clerk": hall.clerks[0],
    }
    ids = {
        "hall_id": hall.hall_id,
        "counter_id": hall.counters[1],
        "service_id": hall.services["A"],
    }

    async def as_role(role: str, method: str, url: str) -> Any:
        if role in users:
            return await call_as(client, users[role], method, url, json={})
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        return await client.request(method, url, headers=headers, json={})

    routes = guarded_routes(client.app)
    assert len(routes) >= 30
    for method, path, roles in routes:
        url = fill(path, ids)
        client.cookies.clear()
        anonymous = await client.request(method, url, json={})
        assert anonymous.status_code == 401, f"{method} {path} let a stranger in"
        assert "sign in first" in anonymous.json()["detail"]

        wrong = [r for r in ALL_ROLES if r not in roles]
        if not wrong:
            assert (method, path) in OPEN_TO_ALL_ROLES, f"{method} {path} admits every role"
        for role in wrong:
            answer = await as_role(role, method, url)
            assert answer.status_code == 403, f"{method} {path} let a {role} in"
            assert "may not do this" in answer.json()["detail"]

        if "manager" in roles and ("{hall_id" in path or "{counter_id" in path):
            answer = await call_as(client, outsider, method, url, json={})
            assert answer.status_code == 403, f"{method} {path} let another hall's manager in"
            assert "no access to hall" in answer.json()["detail"]


async def test_cookie_writes_need_the_csrf_header(client: AsyncTestClient[Any], bus: Bus) -> None:
    hall = await build_hall(client, bus, clerks=1)
    url = f"/api/counters/{hall.counters[1]}/open"
    client.cookies = hall.clerks[0].cookies
    no_header = await client.post(url)
    assert no_header.status_code == 403
    assert "X-CSRF-Token" in no_header.json()["detail"]
    wrong = await client.post(url, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    right = await call_as(client, hall.clerks[0], "POST", url)
    assert right.status_code == 200
    # Reading needs no CSRF header.
    client.cookies = hall.clerks[0].cookies
    read = await client.get(f"/api/counters/{hall.counters[1]}")
    assert read.status_code == 200


async def test_login_logout_and_bad_credentials(client: AsyncTestClient[Any], bus: Bus) -> None:
    hall = await build_hall(client, bus, clerks=1)
    client.cookies.clear()
    wrong = await client.post("/api/auth/login", json={"username": "clerk0", "password": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "wrong username or password"
    nobody = await client.post("/api/auth/login", json={"username": "ghost", "password": "x" * 12})
    assert nobody.status_code == 401
    empty = await client.post("/api/auth/login", json={"username": ""})
    assert empty.status_code == 400

    client.cookies = hall.clerks[0].cookies
    me = await client.get("/api/auth/me")
    assert me.json()["user"]["role"] == "clerk"
    # A page reloaded after signing in gets the session's CSRF token back.
    assert me.json()["csrf_token"] == hall.clerks[0].csrf
    out = await call_as(client, hall.clerks[0], "POST", "/api/auth/logout")
    assert out.status_code == 200
    # The cookie the server cleared is gone from the browser: a fresh request is a stranger.
    client.cookies.clear()
    assert (await client.get("/api/auth/me")).status_code == 401


async def test_the_session_cookie_is_written_at_sign_in_and_sign_out_only(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    """A clerk's day between signing in and out leaves their cookie as it was: no answer
    sets it again, and the one cookie of the sign-in carries every request. Signing out
    clears it, and a cookie the server cannot read is cleared too."""
    hall = await build_hall(client, bus, clerks=1)
    clerk = hall.clerks[0]
    counter = f"/api/counters/{hall.counters[1]}"
    ticket = await client.post(
        f"/api/halls/{hall.hall_id}/tickets", json={"service_id": hall.services["A"]},
        headers=hall.kiosk,
    )  # fmt: skip
    assert ticket.status_code == 201, ticket.text
    answers = [
        await call_as(client, clerk, "POST", f"{counter}/open"),
        await call_as(client, clerk, "POST", f"{counter}/call-next"),
        await call_as(client, clerk, "POST", f"{counter}/start"),
        await call_as(client, clerk, "GET", "/api/auth/me"),
        await call_as(client, clerk, "GET", counter),
    ]
    assert [a.status_code for a in answers] == [200] * len(answers), answers[-1].text
    assert answers[1].json()["ticket"]["number"] == ticket.json()["number"]
    assert [a.headers.get("set-cookie") for a in answers] == [None] * len(answers)
    assert answers[3].json()["user"]["user_id"] == clerk.user_id

    out = await call_as(client, clerk, "POST", "/api/auth/logout")
    assert out.status_code == 200
    cleared = out.headers.get("set-cookie", "")
    assert cleared.startswith("onedoor_session=null") and "expires=" in cleared.lower()
    assert (await call_as(client, clerk, "GET", "/api/auth/me")).status_code == 401

    client.cookies.clear()
    client.cookies.set("onedoor_session", "not-a-session")
    garbled = await client.get("/api/public/halls")
    assert garbled.status_code == 200
    assert garbled.headers.get("set-cookie", "").startswith("onedoor_session=null")


async def test_deactivated_staff_and_revoked_devices_are_refused(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    clerk = hall.clerks[0]
    off = await call_as(
        client, hall.manager, "PATCH", f"/api/halls/{hall.hall_id}/staff/{clerk.user_id}",
        json={"active": False},
    )  # fmt: skip
    assert off.status_code == 200 and off.json()["active"] is False
    client.cookies = clerk.cookies
    assert (await client.get("/api/auth/me")).status_code == 401

    devices = (
        await call_as(client, hall.manager, "GET", f"/api/halls/{hall.hall_id}/devices")
    ).json()
    kiosk_id = next(d["id"] for d in devices if d["kind"] == "kiosk")
    assert all("token" not in d for d in devices), "tokens are shown once, never listed"
    revoked = await call_as(
        client, hall.manager, "DELETE", f"/api/halls/{hall.hall_id}/devices/{kiosk_id}"
    )
    assert revoked.json()["revoked_at"] is not None
    refused = await client.post(
        f"/api/halls/{hall.hall_id}/tickets",
        json={"service_id": hall.services["A"]},
        headers=hall.kiosk,
    )
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]


@pytest.mark.parametrize("role", ["clerk", "manager"])
async def test_only_admins_create_halls_and_managers(
    client: AsyncTestClient[Any], bus: Bus, role: str
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    who = hall.clerks[0] if role == "clerk" else hall.manager
    new_hall = await call_as(
        client, who, "POST", "/api/halls",
        json={"name_zh": "x", "name_en": "x", "opening_hours": ALL_DAY},
    )  # fmt: skip
    assert new_hall.status_code == 403
    if role == "manager":
        manager = await call_as(
            client, who, "POST", f"/api/halls/{hall.hall_id}/staff",
            json={"username": "boss2", "password": "boss2-password", "role": "manager"},
        )  # fmt: skip
        assert manager.status_code == 403
        assert manager.json()["detail"] == "only an admin may add a manager"


async def test_a_manager_cannot_take_over_another_managers_account(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus, clerks=1)
    second = await call_as(
        client, hall.admin, "POST", f"/api/halls/{hall.hall_id}/staff",
        json={"username": "deputy", "password": "deputy-password", "role": "manager"},
    )  # fmt: skip
    takeover = await call_as(
        client, hall.manager, "PATCH", f"/api/halls/{hall.hall_id}/staff/{second.json()['id']}",
        json={"password": "i-own-you-now"},
    )  # fmt: skip
    assert takeover.status_code == 403
    assert takeover.json()["detail"] == "only an admin may change a manager's account"
    by_admin = await call_as(
        client, hall.admin, "PATCH", f"/api/halls/{hall.hall_id}/staff/{second.json()['id']}",
        json={"display_name": "Deputy"},
    )  # fmt: skip
    assert by_admin.status_code == 200


async def test_a_devices_read_skips_the_session_and_staff_keep_theirs(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    """A board's GET with its token has no session (nothing loaded, no cookie set); the same
    route read by signed-in staff still runs on their session, and a device token that
    comes with a cookie is still checked as the device."""
    hall = await build_hall(client, bus, clerks=1)
    snapshot = f"/api/halls/{hall.hall_id}/snapshot"
    client.cookies.clear()
    board = await client.get(snapshot, headers={"Authorization": f"Bearer {hall.board_token}"})
    assert board.status_code == 200 and "set-cookie" not in board.headers
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {hall.board_token}"})
    assert me.status_code == 200 and me.json()["csrf_token"] == ""
    forged = await client.get(snapshot, headers={"Authorization": "Bearer forged"})
    assert forged.status_code == 401
    client.cookies = hall.clerks[0].cookies
    assert (await client.get(snapshot)).status_code == 200
    clerk = await client.get("/api/auth/me")
    assert clerk.json()["csrf_token"] == hall.clerks[0].csrf
    sessions = await client.get("/api/auth/sessions")
    assert sessions.status_code == 200 and any(s["current"] for s in sessions.json())
    with_cookie = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {hall.board_token}"}
    )
    assert with_cookie.json()["user"]["role"] == "board"


async def test_requests_without_a_cookie_skip_the_session_and_sign_in_still_starts_one(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    """No cookie, no session to load or store: a kiosk issuing with its token gets its
    ticket and no cookie; signing in (a route that starts a session) still sets one, and a
    staff member's change without the CSRF header is still refused."""
    hall = await build_hall(client, bus, clerks=1)
    client.cookies.clear()
    issued = await client.post(
        f"/api/halls/{hall.hall_id}/tickets", json={"service_id": hall.services["A"]},
        headers=hall.kiosk,
    )  # fmt: skip
    assert issued.status_code == 201, issued.text
    assert "set-cookie" not in issued.headers
    signed_in = await client.post(
        "/api/auth/login", json={"username": "root", "password": "root-password-1"}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert "onedoor_session=" in signed_in.headers.get("set-cookie", "")
    client.cookies = hall.clerks[0].cookies
    no_csrf = await client.post(
        f"/api/halls/{hall.hall_id}/tickets", json={"service_id": hall.services["A"]}
    )
    assert no_csrf.status_code == 403 and "csrf" in no_csrf.text.lower()
    client.cookies.clear()
    nobody = await client.post(
        f"/api/halls/{hall.hall_id}/tickets", json={"service_id": hall.services["A"]}
    )
    assert nobody.status_code == 401
