//! TOTP (RFC 6238) codes, as Casdoor stores their secrets.
