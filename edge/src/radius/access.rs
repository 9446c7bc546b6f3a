//! Access-Request: the checks before decoding, the credential it carries (PAP, CHAP, MS-CHAPv2, or the
//! answer to a TOTP challenge), and the Access-Accept, -Reject or -Challenge it gets.
//!
//! A TOTP challenge's State is random (16 bytes), kept by the node that issued it — node-local, not
//! replicated — for `challenge_ttl`, and bound to the NAS client, the User-Name and the user it was issued
//! for after their password checked out. It can be answered once: the answer takes it, right or wrong. The
//! code is checked against the user's sealed TOTP factor like a code typed on the sign-in page
//! ([`crate::mfa`]): a code's time step is used up cluster-wide, so the same code (or an older one) is not
//! accepted twice anywhere, and a wrong code counts against the account's lockout like a wrong password. An
//! answer that reaches another node (the second server of an anycast pair) finds no State there and is
//! rejected: the user signs in again from the password. Replicating States would put a Raft write on
//! every challenge and still not make the answer's single use cluster-wide without a second write.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::radius::core::packet::Packet;
use ::radius::core::rfc2865;
use jeton_raft::model::User;
use moka::sync::Cache;

use super::crypto::{self, attr, ms};
use super::reply::Reply;
use super::{code, Answer, Client, Drop, Shared};
use crate::mfa::Codes;
use crate::passwords::{LockoutRule, Proof, Refused, SignIn};

/// What the Reply-Message of a challenge says.
const ENTER_CODE: &str = "Enter the 6-digit code of your authenticator app";

/// The Reply-Message of a CHAP request for a user whose password is not stored in clear (or an unknown one).
const NO_CHAP_CREDENTIAL: &str = "CHAP needs a password stored in clear, which this account does not have: use PAP";

/// The Reply-Message of an MS-CHAPv2 request for a user with neither a password stored in clear nor an
/// NT-hash credential (or an unknown one).
const NO_MSCHAPV2_CREDENTIAL: &str = "MS-CHAPv2 needs a password stored in clear or an NT-hash credential, and \
    this account has neither: use PAP (where the organization opted in, a PAP sign-in derives the credential)";

/// A challenge waiting for its answer.
struct Pending {
    nas: String,
    user_name: String,
    organization: String,
    user_id: String,
}

/// The TOTP challenges this node issued.
pub(crate) struct Challenges {
    pending: Cache<[u8; 16], Arc<Pending>>,
}

impl Challenges {
    pub(crate) fn new(ttl: Duration) -> Challenges {
        Challenges { pending: Cache::builder().max_capacity(100_000).time_to_live(ttl).build() }
    }
}

/// The credential an Access-Request carries.
enum Credential {
    Pap(String),
    Chap { response: Vec<u8>, challenge: Vec<u8> },
    MsChapV2 { challenge: Vec<u8>, response: Vec<u8> },
}

/// Sub-attributes of a vendor's Vendor-Specific attributes in a request: (type, value).
fn vendor_attributes(packet: &Packet, vendor: u32) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    for avp in packet.lookup_all(attr::VENDOR_SPECIFIC) {
        let v = avp.encode_bytes();
        if v.len() < 4 || u32::from_be_bytes([v[0], v[1], v[2], v[3]]) != vendor {
            continue;
        }
        let mut rest = &v[4..];
        while rest.len() >= 2 {
            let len = usize::from(rest[1]);
            if len < 2 || len > rest.len() {
                break;
            }
            out.push((rest[0], rest[2..len].to_vec()));
            rest = &rest[len..];
        }
    }
    out
}

/// The attributes [`access`] reads, without deciding anything (for the fuzz target).
pub(crate) fn read_for_fuzzing(request: &Packet) {
    let _ = rfc2865::lookup_user_name(request);
    let _ = rfc2865::lookup_class(request);
    let _ = rfc2865::lookup_user_password(request);
    let _ = rfc2865::lookup_state(request);
    let _ = request.lookup(attr::CHAP_PASSWORD).map(|a| a.encode_bytes());
    let _ = vendor_attributes(request, ms::VENDOR);
}

/// Answers one packet on the authentication port.
pub(crate) async fn handle(shared: &Shared, client: &Client, packet: &[u8], from: SocketAddr) -> Answer {
    let kind = packet[0];
    if kind != code::ACCESS_REQUEST && kind != code::STATUS_SERVER {
        return Answer::Drop(Drop::UnexpectedCode);
    }
    if let Err(why) = client.message_authenticated(packet) {
        return Answer::Drop(why);
    }
    let secret = &client.nas.secret;
    let Ok(authenticator) = crypto::authenticator(packet) else { return Answer::Drop(Drop::Malformed) };
    if kind == code::STATUS_SERVER {
        // RFC 5997 §3: answered with an Access-Accept (it says the server is up, nothing about anyone).
        return Answer::Reply(Reply::new(code::ACCESS_ACCEPT, packet[1]).finish(&authenticator, secret), "status");
    }
    let request = match Packet::decode(packet, secret) {
        Ok(p) => p,
        Err(_) => return Answer::Drop(Drop::Malformed),
    };
    let outcome = access(shared, client, &request, from).await;
    let mut reply = Reply::new(outcome.code, packet[1]);
    for (typ, value) in &outcome.attributes {
        reply.attr(*typ, value);
    }
    let label = match outcome.code {
        code::ACCESS_ACCEPT => "accept",
        code::ACCESS_CHALLENGE => "challenge",
        _ => "reject",
    };
    Answer::Reply(reply.finish(&authenticator, secret), label)
}

/// An Access-Accept, -Reject or -Challenge and its attributes.
struct Outcome {
    code: u8,
    attributes: Vec<(u8, Vec<u8>)>,
}

impl Outcome {
    fn reject(message: Option<&str>) -> Outcome {
        let attributes = message.map(|m| vec![(attr::REPLY_MESSAGE, m.as_bytes().to_vec())]).unwrap_or_default();
        Outcome { code: code::ACCESS_REJECT, attributes }
    }
}

/// Decides an Access-Request.
async fn access(shared: &Shared, client: &Client, request: &Packet, from: SocketAddr) -> Outcome {
    let user_name = match rfc2865::lookup_user_name(request) {
        Some(Ok(n)) if !n.is_empty() => n,
        _ => return Outcome::reject(None),
    };
    // The organization: the Class attribute (Casdoor's convention), else the client's, else the default.
    let organization = match rfc2865::lookup_class(request) {
        Some(class) if !class.is_empty() => String::from_utf8_lossy(&class).into_owned(),
        _ if !client.nas.organization.is_empty() => client.nas.organization.clone(),
        _ => shared.settings.default_organization.clone(),
    };
    let password = match rfc2865::lookup_user_password(request) {
        Some(Ok(p)) => Some(String::from_utf8_lossy(&p).into_owned()),
        Some(Err(_)) => return Outcome::reject(None),
        None => None,
    };
    if let Some(state) = rfc2865::lookup_state(request) {
        return answer_challenge(shared, client, &state, &user_name, &organization, password.as_deref()).await;
    }
    let ms = vendor_attributes(request, ms::VENDOR);
    let ms_value = |typ: u8| ms.iter().find(|(t, _)| *t == typ).map(|(_, v)| v.clone());
    let credential = if let Some(p) = password {
        Credential::Pap(p)
    } else if let Some(response) = request.lookup(attr::CHAP_PASSWORD).map(|a| a.encode_bytes()) {
        let challenge = request
            .lookup(attr::CHAP_CHALLENGE)
            .map(|a| a.encode_bytes())
            .unwrap_or_else(|| request.get_authenticator().clone());
        Credential::Chap { response, challenge }
    } else if let (Some(challenge), Some(response)) = (ms_value(ms::CHAP_CHALLENGE), ms_value(ms::CHAP2_RESPONSE)) {
        Credential::MsChapV2 { challenge, response }
    } else {
        // EAP and MS-CHAPv1 are not spoken here.
        return Outcome::reject(Some("unsupported authentication method: use PAP, CHAP or MS-CHAPv2"));
    };
    let sign_in = SignIn {
        organization: &organization,
        login: &user_name,
        password: match &credential {
            Credential::Pap(p) => p,
            _ => "",
        },
        // The address is the NAS's, shared by its users: the per-address limit would lock them all out.
        client_ip: None,
        lockout: LockoutRule::HomeApplication,
        ignore_case: false,
    };
    let passwords = &shared.edge.passwords;
    // What the MS-CHAPv2 check accepted (authenticator response, MPPE keys), from whichever NT hash answered
    // the challenge: of the password stored in clear, or the user's NT-hash credential.
    let mschapv2: Arc<OnceLock<crypto::MsChapV2Accept>> = Arc::default();
    let verified = match &credential {
        Credential::Pap(_) => passwords.verify(sign_in).await,
        Credential::Chap { response, challenge } => {
            let (response, challenge) = (response.clone(), challenge.clone());
            let check = move |clear: &str| crypto::chap_ok(&response, &challenge, clear.as_bytes());
            passwords.verify_proof(sign_in, Proof::Cleartext(Box::new(check))).await
        }
        Credential::MsChapV2 { challenge, response } => {
            let (challenge, response, name) = (challenge.clone(), response.clone(), user_name.clone());
            let accepted = mschapv2.clone();
            let check =
                move |hash: &[u8; 16]| match crypto::mschapv2_verify(hash, &challenge, &response, name.as_bytes()) {
                    Ok(Some(a)) => {
                        let _ = accepted.set(a);
                        true
                    }
                    _ => false,
                };
            passwords.verify_proof(sign_in, Proof::NtHash(Box::new(check))).await
        }
    };
    let user = match verified {
        Ok(v) => v.user,
        Err(Refused::NoChallengeCredential) => {
            return Outcome::reject(Some(match credential {
                Credential::MsChapV2 { .. } => NO_MSCHAPV2_CREDENTIAL,
                _ => NO_CHAP_CREDENTIAL,
            }))
        }
        Err(Refused::Locked { minutes }) => {
            return Outcome::reject(Some(&format!(
                "account locked: too many failed sign-ins, try again in {minutes} minutes"
            )))
        }
        Err(Refused::Internal(e)) => {
            tracing::error!(nas = %client.nas.name, "RADIUS password check: {e}");
            return Outcome::reject(None);
        }
        Err(other) => {
            tracing::debug!(nas = %client.nas.name, %from, %organization, "RADIUS Access-Request refused: {other}");
            return Outcome::reject(None);
        }
    };
    if let Err(why) = crate::passwords::may_sign_in(&user) {
        tracing::info!(user = %user.full_name(), reason = why, "RADIUS Access-Request refused");
        return Outcome::reject(None);
    }
    let has_totp = match shared.edge.store.totp(&user.id) {
        Ok(t) => t.is_some(),
        Err(e) => {
            tracing::error!(nas = %client.nas.name, "RADIUS: reading the TOTP factor: {e}");
            return Outcome::reject(None);
        }
    };
    if !user.preferred_mfa_type.is_empty() || has_totp {
        // A second factor is required; only TOTP can be asked for over RADIUS, and only after PAP (the
        // code comes back as the next request's User-Password).
        if !has_totp {
            tracing::info!(user = %user.full_name(), mfa = %user.preferred_mfa_type, "RADIUS refused: MFA without a TOTP secret");
            return Outcome::reject(Some(
                "a second factor is required and only an authenticator app (TOTP) works here",
            ));
        }
        if !matches!(credential, Credential::Pap(_)) {
            return Outcome::reject(Some("a one-time code is required: sign in with PAP"));
        }
        let mut state = [0u8; 16];
        if getrandom::fill(&mut state).is_err() {
            return Outcome::reject(None);
        }
        shared.challenges.pending.insert(
            state,
            Arc::new(Pending {
                nas: client.nas.name.clone(),
                user_name: user_name.clone(),
                organization: organization.clone(),
                user_id: user.id.clone(),
            }),
        );
        return Outcome {
            code: code::ACCESS_CHALLENGE,
            attributes: vec![(attr::STATE, state.to_vec()), (attr::REPLY_MESSAGE, ENTER_CODE.as_bytes().to_vec())],
        };
    }
    let mut outcome = accept(shared, &user);
    if let Credential::MsChapV2 { .. } = &credential {
        // The keys of the NT hash that answered the challenge.
        let Some(success) = mschapv2.get() else {
            return Outcome::reject(None);
        };
        let request_auth: [u8; 16] = match request.get_authenticator().as_slice().try_into() {
            Ok(a) => a,
            Err(_) => return Outcome::reject(None),
        };
        let secret = &client.nas.secret;
        let mut vsa = |typ: u8, value: Vec<u8>| {
            if let Ok(v) = crypto::vendor_value(ms::VENDOR, typ, &value) {
                outcome.attributes.push((attr::VENDOR_SPECIFIC, v));
            }
        };
        vsa(ms::CHAP2_SUCCESS, success.success.to_vec());
        let salt = |n: u16| 0x8000 | (n & 0x7fff);
        let mut nonce = [0u8; 2];
        let _ = getrandom::fill(&mut nonce);
        let base = u16::from_be_bytes(nonce);
        for (typ, key, salt) in [
            (ms::MPPE_RECV_KEY, &success.recv_key, salt(base)),
            (ms::MPPE_SEND_KEY, &success.send_key, salt(base.wrapping_add(1))),
        ] {
            match crypto::mppe_key_attribute(key, secret, &request_auth, salt) {
                Ok(value) => vsa(typ, value),
                Err(_) => return Outcome::reject(None),
            }
        }
        vsa(ms::MPPE_ENCRYPTION_POLICY, ms::POLICY_ALLOWED.to_be_bytes().to_vec());
        vsa(ms::MPPE_ENCRYPTION_TYPES, (ms::TYPES_40_BIT | ms::TYPES_128_BIT).to_be_bytes().to_vec());
    }
    outcome
}

/// The Access-Accept of `user`, with the attributes their organization maps from their groups and roles.
fn accept(shared: &Shared, user: &User) -> Outcome {
    let mut attributes = Vec::new();
    let rules: Vec<_> = shared.settings.replies.iter().filter(|r| r.organization == user.owner).collect();
    if !rules.is_empty() {
        let roles: Vec<String> = match shared.edge.roles_of(user) {
            Ok(roles) => roles.into_iter().map(|r| r.name).collect(),
            Err(e) => {
                tracing::error!(user = %user.full_name(), "RADIUS reply attributes: reading roles: {e}");
                Vec::new()
            }
        };
        for rule in rules {
            if rule.applies(&user.owner, &user.groups, &roles) {
                attributes.extend(rule.attributes.iter().map(|a| a.encode()));
            }
        }
    }
    Outcome { code: code::ACCESS_ACCEPT, attributes }
}

/// The answer to a TOTP challenge: the State must be one this node issued, unexpired and unused, for this
/// NAS, User-Name and organization; it is used up whatever the code. The code must be right and newer than
/// the last one the user used.
async fn answer_challenge(
    shared: &Shared,
    client: &Client,
    state: &[u8],
    user_name: &str,
    organization: &str,
    code: Option<&str>,
) -> Outcome {
    let Ok(state) = <[u8; 16]>::try_from(state) else { return Outcome::reject(None) };
    let Some(pending) = shared.challenges.pending.remove(&state) else {
        tracing::info!(nas = %client.nas.name, "RADIUS challenge answer with an unknown, used or expired State");
        return Outcome::reject(None);
    };
    if pending.nas != client.nas.name || pending.user_name != user_name || pending.organization != organization {
        tracing::warn!(nas = %client.nas.name, "RADIUS challenge answered for another NAS or user: refused");
        return Outcome::reject(None);
    }
    let user = match shared.edge.store.user_by_id(&pending.user_id).and_then(|u| u.map(|u| u.to_owned()).transpose()) {
        Ok(Some(u)) => u,
        _ => return Outcome::reject(None),
    };
    if crate::passwords::may_sign_in(&user).is_err() {
        return Outcome::reject(None);
    }
    let Some(code) = code else { return Outcome::reject(None) };
    // The NAS's address is shared by its users: no per-address limit (as for the password).
    let checked =
        shared.edge.check_second_factor(&user, code, Codes::TotpOnly, None, LockoutRule::HomeApplication).await;
    match checked {
        Ok(()) => accept(shared, &user),
        Err(Refused::Locked { minutes }) => {
            Outcome::reject(Some(&format!("account locked: too many failed sign-ins, try again in {minutes} minutes")))
        }
        Err(Refused::Internal(e)) => {
            tracing::error!(nas = %client.nas.name, "RADIUS one-time code check: {e}");
            Outcome::reject(None)
        }
        Err(_) => {
            tracing::info!(user = %user.full_name(), "RADIUS one-time code wrong or used already");
            Outcome::reject(None)
        }
    }
}
