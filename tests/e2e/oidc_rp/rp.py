#!/usr/bin/env python3
"""An OpenID Connect relying party that is not Jeton's: Python's authlib, configured from discovery alone.

    rp.py ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI USERNAME PASSWORD

CLIENT_SECRET empty means a public client: no client authentication at the token endpoint, PKCE only.

It does what a web application using authlib does, with a scripted browser in the middle:
  1. reads ISSUER/.well-known/openid-configuration and nothing else (authlib validates the document);
  2. builds the authorization URL with authlib: state, nonce, PKCE S256;
  3. plays the user's browser (its own requests.Session with its own cookies, redirects not followed): opens
     the URL, fills Jeton's login form (#login-form: hidden `csrf` and `request`, username, password) and
     follows redirects until one points at REDIRECT_URI, which it never requests (no RP listens there);
  4. checks `state` and `iss` (RFC 9207) on that redirect;
  5. redeems the code with authlib's OAuth2Session.fetch_token (code_verifier, the client auth the
     discovery document offers);
  6. verifies the ID token's signature against the discovery document's jwks_uri and validates its claims
     with authlib's CodeIDToken (iss, aud, exp, iat, azp, nonce, at_hash), and makes sure both checks can
     fail: a wrong nonce and another access token must be refused;
  7. calls userinfo with the access token; its `sub` must be the ID token's (OIDC Core 5.3.2).

Prints one JSON line with what it checked and exits 0; on any failure it says which step failed and why
on stderr and exits 1. The server being tested is never trusted to say a check passed.
"""

import json
import sys
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc9207 import AuthorizationServerMetadata as IssParameterMetadata
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

USAGE = "rp.py ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI USERNAME PASSWORD"
SCOPE = "openid profile email"
TIMEOUT = 20
# A sign-in is a handful of redirects (authorize → login → authorize → redirect_uri); more is a loop.
MAX_HOPS = 10


class Failure(Exception):
    """A check that did not pass, with the step it belongs to."""

    def __init__(self, step, reason):
        super().__init__(f"{step}: {reason}")


class FormReader(HTMLParser):
    """The forms of a page (by id: action and named inputs) and the text of its #error element. Attribute
    values come back with their character references decoded, as a browser would submit them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms = {}
        self.error = ""
        self._form = None
        self._in_error = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = a.get("id") or ""
            self.forms[self._form] = {"action": a.get("action") or "", "inputs": {}}
        elif tag == "input" and self._form is not None and a.get("name"):
            self.forms[self._form]["inputs"][a["name"]] = a.get("value") or ""
        if a.get("id") == "error":
            self._in_error = 1
        elif self._in_error:
            self._in_error += 1

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        if self._in_error:
            self._in_error -= 1

    def handle_data(self, data):
        if self._in_error:
            self.error += data


def discover(issuer):
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        r = requests.get(url, timeout=TIMEOUT)
    except requests.RequestException as e:
        raise Failure("discovery", f"GET {url}: {e}") from e
    if r.status_code != 200:
        raise Failure("discovery", f"GET {url} answered {r.status_code}: {r.text[:300]}")
    metadata = OpenIDProviderMetadata(r.json())
    try:
        metadata.validate(metadata_classes=[IssParameterMetadata])
    except ValueError as e:
        raise Failure("discovery", f"the document is not valid OpenID Provider Metadata: {e}") from e
    # OIDC Discovery 4.3: the issuer in the document is exactly the one it was fetched for.
    if metadata["issuer"] != issuer:
        raise Failure("discovery", f"issuer {metadata['issuer']!r} is not {issuer!r}")
    if "code" not in metadata["response_types_supported"]:
        raise Failure("discovery", f"response_type code is not offered: {metadata['response_types_supported']}")
    if "authorization_code" not in metadata.get("grant_types_supported", ["authorization_code"]):
        raise Failure("discovery", f"authorization_code is not offered: {metadata['grant_types_supported']}")
    # RFC 8414: without code_challenge_methods_supported a client cannot know the server does PKCE.
    if "S256" not in metadata.get("code_challenge_methods_supported", []):
        raise Failure("discovery", "code_challenge_methods_supported does not list S256")
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        if not metadata.get(key):
            raise Failure("discovery", f"{key} is missing")
    return metadata


def token_endpoint_auth(metadata, client_secret):
    """The client authentication this client uses, from what the server offers: HTTP Basic if it can."""
    if not client_secret:
        return "none"
    offered = metadata.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    for method in ("client_secret_basic", "client_secret_post"):
        if method in offered:
            return method
    raise Failure("discovery", f"no client secret method among token_endpoint_auth_methods_supported {offered}")


def is_redirect_uri(location, redirect_uri):
    got, want = urlsplit(location), urlsplit(redirect_uri)
    return (got.scheme, got.netloc, got.path) == (want.scheme, want.netloc, want.path)


def sign_in(authorize_url, redirect_uri, username, password):
    """Plays the browser from the authorization URL to the redirect to `redirect_uri`, and returns that
    redirect's URL. The login form is filled once; any other page on the way is a failure."""
    browser = requests.Session()
    url, method, form = authorize_url, "GET", None
    signed_in = False
    for _ in range(MAX_HOPS):
        try:
            r = browser.request(method, url, data=form, allow_redirects=False, timeout=TIMEOUT)
        except requests.RequestException as e:
            raise Failure("browser", f"{method} {url}: {e}") from e
        if r.is_redirect:
            location = urljoin(r.url, r.headers["Location"])
            if is_redirect_uri(location, redirect_uri):
                return location
            # 307 and 308 repeat the request as it was; the others turn it into a GET.
            if r.status_code not in (307, 308):
                method, form = "GET", None
            url = location
            continue
        page = FormReader()
        page.feed(r.text)
        login = page.forms.get("login-form")
        if r.status_code != 200 or login is None:
            detail = page.error.strip() or r.text[:300]
            if "totp-form" in page.forms:
                detail = "a TOTP step was asked for; this user has no second factor"
            elif "consent-form" in page.forms:
                detail = "a consent page was shown; the application skips consent"
            raise Failure("browser", f"{method} {url} answered {r.status_code}, not the login form: {detail}")
        if signed_in:
            raise Failure("browser", f"the login form came back after signing in: {page.error.strip()!r}")
        for hidden in ("csrf", "request"):
            if hidden not in login["inputs"]:
                raise Failure("browser", f"the login form has no hidden {hidden!r} field")
        form = dict(login["inputs"])
        form["username"] = username
        form["password"] = password
        url, method = urljoin(r.url, login["action"] or r.url), "POST"
        signed_in = True
    raise Failure("browser", f"more than {MAX_HOPS} requests without reaching {redirect_uri}")


def check_authorization_response(location, state, issuer):
    query = parse_qs(urlsplit(location).query)
    one = {k: v[0] for k, v in query.items()}
    if "error" in one:
        raise Failure("authorization response", f"error {one['error']}: {one.get('error_description', '')}")
    if not one.get("code"):
        raise Failure("authorization response", f"no code in {location}")
    if one.get("state") != state:
        raise Failure("authorization response", f"state {one.get('state')!r} is not the one sent")
    # RFC 9207 2.4: the iss parameter, when sent, must be the issuer; the contract says it always is sent.
    if one.get("iss") != issuer:
        raise Failure("authorization response", f"iss {one.get('iss')!r} is not the issuer {issuer!r}")
    return one["code"]


def id_token_claims(header, claims, client_id, issuer, nonce, access_token, leeway):
    """authlib's validation of an ID token from the code flow, with every claim the RP relies on required."""
    options = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
        "nonce": {"essential": True},
        "at_hash": {"essential": True},
    }
    params = {"nonce": nonce, "client_id": client_id, "access_token": access_token}
    validated = CodeIDToken(claims, header, options, params)
    validated.validate(leeway=leeway)
    return validated


def refused(check):
    try:
        check()
    except JoseError:
        return True
    return False


def run(issuer, client_id, client_secret, redirect_uri, username, password):
    metadata = discover(issuer)
    auth_method = token_endpoint_auth(metadata, client_secret)
    client = OAuth2Session(
        client_id=client_id,
        client_secret=client_secret or None,
        token_endpoint_auth_method=auth_method,
        scope=SCOPE,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        default_timeout=TIMEOUT,
    )
    code_verifier = generate_token(64)
    nonce = generate_token(24)
    authorize_url, state = client.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce
    )

    location = sign_in(authorize_url, redirect_uri, username, password)
    check_authorization_response(location, state, metadata["issuer"])

    try:
        token = client.fetch_token(
            metadata["token_endpoint"],
            authorization_response=location,
            state=state,
            code_verifier=code_verifier,
        )
    except Exception as e:  # authlib raises OAuthError for an error answer, requests' errors otherwise
        raise Failure("token", f"{type(e).__name__}: {e}") from e
    for key in ("access_token", "id_token"):
        if not token.get(key):
            raise Failure("token", f"no {key} in the token response: {sorted(token)}")
    if token["id_token"] == token["access_token"]:
        raise Failure("token", "the id_token is the access token")

    try:
        jwks = requests.get(metadata["jwks_uri"], timeout=TIMEOUT)
        jwks.raise_for_status()
        keys = KeySet.import_key_set(jwks.json())
        decoded = jwt.decode(token["id_token"], keys, algorithms=metadata["id_token_signing_alg_values_supported"])
    except (requests.RequestException, ValueError, JoseError) as e:
        raise Failure("id_token signature", f"{type(e).__name__}: {e}") from e
    try:
        claims = id_token_claims(
            decoded.header, decoded.claims, client_id, metadata["issuer"], nonce,
            token["access_token"], leeway=30,
        )
    except JoseError as e:
        raise Failure("id_token claims", f"{type(e).__name__}: {e}") from e
    # The two checks this test exists for must be able to fail: the same token with another nonce, or next
    # to another access token, is refused.
    nonce_checked = refused(lambda: id_token_claims(
        decoded.header, decoded.claims, client_id, metadata["issuer"], nonce + "x",
        token["access_token"], leeway=30))
    at_hash_checked = refused(lambda: id_token_claims(
        decoded.header, decoded.claims, client_id, metadata["issuer"], nonce,
        token["access_token"] + "x", leeway=30))
    if not (nonce_checked and at_hash_checked):
        raise Failure("id_token claims", f"a wrong nonce refused: {nonce_checked}, a wrong at_hash refused: "
                      f"{at_hash_checked}")

    try:
        r = client.get(metadata["userinfo_endpoint"])
    except requests.RequestException as e:
        raise Failure("userinfo", str(e)) from e
    if r.status_code != 200:
        raise Failure("userinfo", f"answered {r.status_code}: {r.text[:300]}")
    userinfo = r.json()
    if userinfo.get("sub") != claims["sub"]:
        raise Failure("userinfo", f"sub {userinfo.get('sub')!r} is not the ID token's {claims['sub']!r}")

    return {
        "issuer": metadata["issuer"],
        "client_auth": auth_method,
        "pkce": "S256",
        "state_checked": True,
        "iss_checked": True,
        "iss_parameter_advertised": bool(metadata.get("authorization_response_iss_parameter_supported")),
        "sub": claims["sub"],
        "aud": claims["aud"],
        "id_token_alg": decoded.header.get("alg"),
        "id_token_kid": decoded.header.get("kid"),
        "nonce": claims["nonce"],
        "nonce_validated": nonce_checked,
        "at_hash_validated": at_hash_checked,
        "token_type": token.get("token_type"),
        "scope": token.get("scope"),
        "refresh_token": bool(token.get("refresh_token")),
        "userinfo": userinfo,
    }


def main(argv):
    if len(argv) != 7:
        print(f"usage: {USAGE}", file=sys.stderr)
        return 2
    issuer, client_id, client_secret, redirect_uri, username, password = argv[1:]
    try:
        result = run(issuer, client_id, client_secret, redirect_uri, username, password)
    except Failure as e:
        print(f"rp: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
