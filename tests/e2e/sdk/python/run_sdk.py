"""Casdoor's Python SDK (PyPI `casdoor`) against a Jeton node, unchanged: every SDK method whose endpoint
Jeton serves, with its result checked. Run by tests/e2e/sdk.rs; exits non-zero on the first failed check.

Environment: JETON_URL, JETON_ADMIN_CLIENT_ID, JETON_ADMIN_CLIENT_SECRET (the admin application), and
JETON_SDK_ORG (a fresh organization name this script creates and deletes).
"""

import os
import sys
import time

from casdoor import CasdoorSDK
from casdoor.application import Application
from casdoor.cert import Cert
from casdoor.group import Group
from casdoor.organization import Organization
from casdoor.role import Role
from casdoor.user import User

URL = os.environ["JETON_URL"]
ADMIN_ID = os.environ["JETON_ADMIN_CLIENT_ID"]
ADMIN_SECRET = os.environ["JETON_ADMIN_CLIENT_SECRET"]
ORG = os.environ["JETON_SDK_ORG"]
APP = f"app-{ORG}"
APP_SECRET = f"{ORG}-client-secret-0123456789"
PASSWORD = "Sdk-Password-123"
NOW = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def main():
    # The admin SDK: the admin application's credentials, sent as clientId/clientSecret query parameters.
    admin = CasdoorSDK(URL, ADMIN_ID, ADMIN_SECRET, "", ORG, "app-built-in")

    # Organizations
    org = Organization.new("admin", ORG, NOW, "SDK Org", "", "argon2id", [], [], [], [], 0, False, False)
    org.masterPassword = ""
    check(admin.add_organization(org) == "Affected", "add_organization")
    got = admin.get_organization(ORG)
    check(got.name == ORG and got.displayName == "SDK Org", "get_organization")
    check(got.masterPassword in ("", "***"), "get_organization shows no master password")
    check(any(o.name == ORG for o in admin.get_organizations()), "get_organizations")
    got.displayName = "SDK Org Renamed"
    check(admin.update_organization(got) == "Affected", "update_organization")
    check(admin.get_organization(ORG).displayName == "SDK Org Renamed", "update_organization took effect")

    # Certs (signing keys)
    cert = Cert.new("admin", f"cert-{ORG}", NOW, "SDK cert", "JWT", "x509", "RS256", 2048, 20)
    check(admin.add_cert(cert) == "Affected", "add_cert")
    got = admin.get_cert(f"cert-{ORG}")
    check(got.name == f"cert-{ORG}" and got.cryptoAlgorithm == "RS256", "get_cert")
    check(isinstance(got.createdTime, str) and got.createdTime.startswith("20"), "cert createdTime is RFC 3339 text")
    check(got.certificate.startswith("-----BEGIN CERTIFICATE-----"), "get_cert has the certificate")
    check(any(c.name == f"cert-{ORG}" for c in admin.get_certs()), "get_certs")

    # Applications: the caller chooses the client secret (Jeton keeps only its digest).
    app = Application.new("admin", APP, NOW, "SDK App", "", "", "", ORG)
    app.clientSecret = APP_SECRET
    app.grantTypes = ["password", "client_credentials", "refresh_token"]
    app.cert = f"cert-{ORG}"
    app.expireInHours = 1
    app.refreshExpireInHours = 24
    check(admin.add_application(app) == "Affected", "add_application")
    got = admin.get_application(APP)
    check(got.organization == ORG and got.clientSecret == "***", "get_application (secret masked)")
    check(got.tokenSigningMethod == "RS256", "the application signs RS256")
    client_id = got.clientId
    check(len(client_id) > 0, "a client id was generated")
    check(any(a.name == APP for a in admin.get_applications()), "get_applications")
    got.displayName = "SDK App Renamed"
    check(admin.update_application(got) == "Affected", "update_application")
    check(admin.get_application(APP).displayName == "SDK App Renamed", "update_application took effect")

    # Users
    user = User.new(ORG, "alice", NOW, "Alice", "alice@sdk.example")
    user.password = PASSWORD
    check(admin.add_user(user)["status"] == "ok", "add_user")
    got = admin.get_user("alice")
    check(got.name == "alice" and got.email == "alice@sdk.example", "get_user")
    check(got.password in ("", "***"), "get_user shows no password hash")
    check(any(u.name == "alice" for u in admin.get_users()), "get_users")
    users, total = admin.get_pagination_users(1, 10)
    check(total == 1 and users[0].name == "alice", "get_pagination_users")
    got.displayName = "Alice Renamed"
    check(admin.update_user(got)["status"] == "ok", "update_user (masked password sent back)")
    check(admin.get_user("alice").displayName == "Alice Renamed", "update_user took effect")
    bob = User.new(ORG, "bob", NOW, "Bob", "bob@sdk.example")
    bob.password = PASSWORD
    check(admin.add_user(bob)["status"] == "ok", "add_user bob")

    # Groups
    group = Group.new(ORG, "devs", NOW, "Developers")
    group.type = "Virtual"
    group.parentId = ORG
    group.isTopGroup = True
    group.isEnabled = True
    check(admin.add_group(group) == "Affected", "add_group")
    got = admin.get_group("devs")
    check(got.name == "devs" and got.displayName == "Developers", "get_group")
    check(any(g.name == "devs" for g in admin.get_groups()), "get_groups")
    got.displayName = "Developers Renamed"
    check(admin.update_group(got) == "Affected", "update_group")

    # Roles
    role = Role.new(ORG, "readers", NOW, "Readers", "may read")
    role.users = [f"{ORG}/alice"]
    role.isEnabled = True
    check(admin.add_role(role)["status"] == "ok", "add_role")
    got = admin.get_role("readers")
    check(got.users == [f"{ORG}/alice"], "get_role")
    check(any(r.name == "readers" for r in admin.get_roles()), "get_roles")
    check(admin.assign_role_to_user("bob", "readers")["status"] == "ok", "assign_role_to_user")
    check(f"{ORG}/bob" in admin.get_role("readers").users, "assign_role_to_user took effect")
    check(admin.remove_role_from_user("bob", "readers")["status"] == "ok", "remove_role_from_user")
    got = admin.get_role("readers")
    got.description = "may read a lot"
    check(admin.update_role(got)["status"] == "ok", "update_role")

    # Tokens, as an application of the organization sees them.
    certificate = admin.get_cert(f"cert-{ORG}").certificate
    sdk = CasdoorSDK(URL, client_id, APP_SECRET, certificate, ORG, APP)
    token = sdk.get_oauth_token(username="alice", password=PASSWORD)
    check("access_token" in token and token.get("token_type") == "Bearer", f"get_oauth_token (password): {token}")
    claims = sdk.parse_jwt_token(token["access_token"])
    check(claims["sub"] == admin.get_user("alice").id, "parse_jwt_token of a password-grant token")
    token = sdk.get_oauth_token_by_password("alice", PASSWORD)
    check(token["refresh_token"] != "", "get_oauth_token_by_password")
    try:
        sdk.get_oauth_token_by_password("alice", "wrong-password")
        check(False, "a wrong password is refused")
    except Exception as e:  # noqa: BLE001 - the SDK raises a bare Exception
        check("invalid" in str(e), f"get_oauth_token_by_password refuses a wrong password ({e})")
    refreshed = sdk.refresh_oauth_tokens(token["refresh_token"])
    check(refreshed.get("access_token") and refreshed["refresh_token"] != token["refresh_token"], "refresh_oauth_tokens")
    access = sdk.refresh_oauth_token(refreshed["refresh_token"])
    check(isinstance(access, str) and sdk.parse_jwt_token(access)["sub"] == claims["sub"], "refresh_oauth_token")
    cc = sdk.get_oauth_token()
    check(cc.get("access_token") and cc["refresh_token"] == "", f"get_oauth_token (client credentials): {cc}")
    check(sdk.parse_jwt_token(cc["access_token"])["aud"] in (client_id, [client_id]), "parse_jwt_token of a client token")
    info = sdk.introspect_token(access)
    check(info.get("active") is True and info.get("client_id") == client_id, f"introspect_token: {info}")
    check(sdk.introspect_token("not-a-token").get("active") is False, "introspect_token of garbage")
    # An access token of an administrator opens the admin API (the SDK sends it as a Bearer token).
    admin_token = admin.get_oauth_token()["access_token"]
    check(admin.with_access_token(admin_token).get_user("alice").name == "alice", "with_access_token")

    # Deletes
    check(admin.delete_role(admin.get_role("readers"))["status"] == "ok", "delete_role")
    check(admin.delete_group(admin.get_group("devs")) == "Affected", "delete_group")
    for name in ("alice", "bob"):
        check(admin.delete_user(admin.get_user(name))["status"] == "ok", f"delete_user {name}")
    check(admin.get_user("alice") is None, "a deleted user is gone")
    check(admin.delete_application(admin.get_application(APP)) == "Affected", "delete_application")
    check(admin.delete_cert(admin.get_cert(f"cert-{ORG}")) == "Affected", "delete_cert")
    check(admin.delete_organization(admin.get_organization(ORG)) == "Affected", "delete_organization")
    print("python sdk: all checks passed")


if __name__ == "__main__":
    main()
