//! Bind: simple authentication through the password service (the one OAuth's password grant uses: lockout,
//! per-address limit, hashing slots, timing floor). Every failed password bind answers the same.

use std::time::Instant;

use ldap3_proto::proto::{LdapBindCred, LdapBindRequest, LdapBindResponse, LdapResultCode};

use super::{result, Session, Shared};
use crate::directory::{parse_dn, Viewer};
use crate::passwords::{LockoutRule, Refused, SignIn};

/// The one diagnostic message of a failed bind, whatever failed.
const INVALID: &str = "invalid credentials";

/// Who a bind DN names: `cn=<login>,ou=<org>[,…]` (Casdoor: the login may be a name, an email, a phone or
/// an id; with several `ou` the last wins), `uid=<name>,ou=<org>[,…]` (the entry's own DN), Casdoor's
/// entry DN `uid=<id>,cn=<name>,ou=<org>` (cn wins), and without `ou` the administrators' organization.
/// `None` when it names nobody (no `cn` or `uid`, or not a DN).
pub(crate) fn bind_target(dn: &str, admin_org: &str) -> Option<(String, String)> {
    let rdns = parse_dn(dn)?;
    let login = rdns.iter().find(|r| r.key == "cn").or_else(|| rdns.iter().find(|r| r.key == "uid"))?;
    let org = rdns.iter().rev().find(|r| r.key == "ou").map_or(admin_org, |r| r.value.as_str());
    if login.value.is_empty() || org.is_empty() {
        return None;
    }
    Some((org.to_string(), login.value.clone()))
}

pub(super) async fn bind(shared: &Shared, session: &mut Session, req: LdapBindRequest) -> LdapBindResponse {
    let started = Instant::now();
    // Whatever happens next, the connection is anonymous until this bind succeeds (RFC 4511 §4.2.1).
    session.viewer = Viewer::Anonymous;
    let metrics = &shared.edge.metrics;
    let answer = |code, message: &str| LdapBindResponse { res: result(code, message), saslcreds: None };
    if req.version != 3 {
        return answer(LdapResultCode::ProtocolError, "only LDAP version 3 is supported");
    }
    let password = match req.cred {
        LdapBindCred::Simple(p) => p,
        LdapBindCred::SASL(_) | LdapBindCred::Unsupported => {
            return answer(LdapResultCode::AuthMethodNotSupported, "only simple binds are supported");
        }
    };
    if req.dn.is_empty() && password.is_empty() {
        metrics.ldap_bind("anonymous");
        return answer(LdapResultCode::Success, "");
    }
    if password.is_empty() {
        // An unauthenticated bind (RFC 4513 §5.1.2): refused, not treated as anonymous.
        return answer(LdapResultCode::UnwillingToPerform, "unauthenticated binds are not allowed");
    }
    if shared.settings.require_confidentiality && !session.tls {
        return answer(LdapResultCode::ConfidentialityRequired, "use StartTLS or LDAPS to bind with a password");
    }
    let Some((org, login)) = bind_target(&req.dn, &shared.edge.config.admin_org) else {
        metrics.ldap_bind("failed");
        return answer(LdapResultCode::InvalidDNSyntax, "the bind DN names no user (cn=<login>,ou=<organization>)");
    };
    let edge = &shared.edge;
    // The organization of a DN compares ignoring case (`ou=ACME` is acme).
    let org = match shared.directory.resolve_org(&org) {
        Ok(Some(stored)) => stored,
        _ => org,
    };
    let sign_in = SignIn {
        organization: &org,
        login: &login,
        password: &password,
        client_ip: Some(session.peer.ip()),
        lockout: LockoutRule::HomeApplication,
        // LDAP names match ignoring case: `uid=Alice` is alice, when that names one user.
        ignore_case: true,
    };
    let refused = match edge.passwords.verify(sign_in).await {
        Ok(verified) => match crate::passwords::may_sign_in(&verified.user) {
            Ok(()) => {
                metrics.ldap_bind("ok");
                let user = &verified.user;
                session.viewer = Viewer::User { owner: user.owner.clone(), name: user.name.clone() };
                return answer(LdapResultCode::Success, "");
            }
            Err(why) => {
                tracing::info!(user = %verified.user.full_name(), reason = why, "LDAP bind refused");
                // As slow as a wrong password: the answer must not tell that this one was right.
                tokio::time::sleep_until((started + edge.config.passwords.failure_floor).into()).await;
                None
            }
        },
        Err(Refused::Internal(e)) => Some(e),
        Err(other) => {
            tracing::debug!(peer = %session.peer, %org, "LDAP bind failed: {other}");
            None
        }
    };
    metrics.ldap_bind("failed");
    match refused {
        Some(e) => {
            tracing::error!("LDAP bind: {e}");
            answer(LdapResultCode::OperationsError, "internal error")
        }
        None => answer(LdapResultCode::InvalidCredentials, INVALID),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_dns_name_their_user() {
        let t = |dn: &str| bind_target(dn, "built-in");
        assert_eq!(t("cn=alice,ou=acme"), Some(("acme".into(), "alice".into())));
        assert_eq!(t("CN=alice, OU=acme, dc=example,dc=com"), Some(("acme".into(), "alice".into())));
        assert_eq!(t("uid=alice,ou=acme,dc=example,dc=com"), Some(("acme".into(), "alice".into())));
        assert_eq!(t("uid=1234-id,cn=alice,ou=acme"), Some(("acme".into(), "alice".into())));
        assert_eq!(t("cn=admin"), Some(("built-in".into(), "admin".into())));
        assert_eq!(t("cn=a,ou=x,ou=acme"), Some(("acme".into(), "a".into())), "the last ou wins");
        assert_eq!(t("ou=acme"), None);
        assert_eq!(t("not a dn"), None);
    }
}
