//! Accounting-Request (RFC 2866, with RFC 2869's gigaword counters): verified, recorded through Raft, then
//! acknowledged. RFC 2866 §2 forbids acknowledging what was not recorded: without a quorum the request
//! gets no answer and the NAS retransmits (or tries another server). A retransmission of a request whose
//! Accounting-Response was lost is answered from the duplicate cache (mod.rs) without a second write;
//! one that arrives after that cache forgot it is recorded again, which the session's rules make harmless
//! (counters keep their largest value).

use std::net::SocketAddr;

use ::radius::core::packet::Packet;
use jeton_raft::model::{AccountingEvent, AccountingStatus};
use jeton_raft::Command;

use super::crypto;
use super::reply::Reply;
use super::{code, Answer, Client, Drop, Shared};

/// Attribute types of RFC 2865/2866/2869 read here.
mod attr {
    pub const USER_NAME: u8 = 1;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const NAS_PORT: u8 = 5;
    pub const SERVICE_TYPE: u8 = 6;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const FRAMED_IP_NETMASK: u8 = 9;
    pub const CLASS: u8 = 25;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_INPUT_PACKETS: u8 = 47;
    pub const ACCT_OUTPUT_PACKETS: u8 = 48;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const ACCT_MULTI_SESSION_ID: u8 = 50;
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const NAS_PORT_TYPE: u8 = 61;
    pub const NAS_PORT_ID: u8 = 87;
    pub const NAS_IPV6_ADDRESS: u8 = 95;
}

/// Answers one packet on the accounting port.
pub(crate) async fn handle(shared: &Shared, client: &Client, packet: &[u8], from: SocketAddr) -> Answer {
    let secret = &client.nas.secret;
    let Ok(authenticator) = crypto::authenticator(packet) else { return Answer::Drop(Drop::Malformed) };
    match packet[0] {
        code::STATUS_SERVER => {
            if let Err(why) = client.message_authenticated(packet) {
                return Answer::Drop(why);
            }
            let reply = Reply::new(code::ACCOUNTING_RESPONSE, packet[1]).finish(&authenticator, secret);
            return Answer::Reply(reply, "status");
        }
        code::ACCOUNTING_REQUEST => {}
        _ => return Answer::Drop(Drop::UnexpectedCode),
    }
    if !crypto::accounting_request_ok(packet, secret) {
        return Answer::Drop(Drop::BadAuthenticator);
    }
    if let Err(why) = client.message_authenticated(packet) {
        return Answer::Drop(why);
    }
    let request = match Packet::decode(packet, secret) {
        Ok(p) => p,
        Err(_) => return Answer::Drop(Drop::Malformed),
    };
    let Some(event) = event(shared, client, &request) else {
        return Answer::Drop(Drop::Malformed);
    };
    let status = event.status;
    match shared.edge.write(Command::RecordAccounting { event }).await {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(nas = %client.nas.name, %from, status = status.as_str(), "accounting not recorded: {e}");
            return Answer::Drop(Drop::NotRecorded);
        }
    }
    let reply = Reply::new(code::ACCOUNTING_RESPONSE, packet[1]).finish_accounting(&authenticator, secret);
    Answer::Reply(reply, "accounting")
}

/// The attributes [`event`] reads (for the fuzz target).
pub(crate) fn read_for_fuzzing(p: &Packet) {
    for typ in [attr::USER_NAME, attr::CLASS, attr::ACCT_SESSION_ID, attr::NAS_IDENTIFIER, attr::NAS_PORT_ID] {
        let _ = text(p, typ);
    }
    for typ in [attr::ACCT_STATUS_TYPE, attr::ACCT_INPUT_OCTETS, attr::ACCT_INPUT_GIGAWORDS, attr::NAS_PORT] {
        let _ = number(p, typ);
    }
    let _ = (ipv4(p, attr::NAS_IP_ADDRESS), ipv4(p, attr::FRAMED_IP_ADDRESS));
    let _ = p.lookup(attr::NAS_IPV6_ADDRESS).and_then(|a| a.encode_ipv6().ok());
}

fn text(p: &Packet, typ: u8) -> String {
    p.lookup(typ).map(|a| String::from_utf8_lossy(&a.encode_bytes()).into_owned()).unwrap_or_default()
}

fn number(p: &Packet, typ: u8) -> Option<u32> {
    p.lookup(typ).and_then(|a| a.encode_u32().ok())
}

fn ipv4(p: &Packet, typ: u8) -> String {
    p.lookup(typ).and_then(|a| a.encode_ipv4().ok()).map(|ip| ip.to_string()).unwrap_or_default()
}

/// The event an Accounting-Request reports; `None` when it names no status this records.
fn event(shared: &Shared, client: &Client, p: &Packet) -> Option<AccountingEvent> {
    let status = AccountingStatus::from_code(number(p, attr::ACCT_STATUS_TYPE)?)?;
    let sent_name = text(p, attr::USER_NAME);
    let exists = |org: &str| !org.is_empty() && matches!(shared.edge.store.organization(org), Ok(Some(_)));
    // The organization: Casdoor's `org/user` User-Name, else the Class, else the client's, else the default.
    let (organization, user_name) = match sent_name.split_once('/') {
        Some((org, user)) if exists(org) => (org.to_string(), user.to_string()),
        _ => {
            let class = text(p, attr::CLASS);
            let org = if exists(&class) {
                class
            } else if !client.nas.organization.is_empty() {
                client.nas.organization.clone()
            } else {
                shared.settings.default_organization.clone()
            };
            (org, sent_name)
        }
    };
    let delay = i64::from(number(p, attr::ACCT_DELAY_TIME).unwrap_or(0));
    let nas_ip_address = match ipv4(p, attr::NAS_IP_ADDRESS) {
        a if a.is_empty() => p
            .lookup(attr::NAS_IPV6_ADDRESS)
            .and_then(|a| a.encode_ipv6().ok())
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        a => a,
    };
    let octets = |low: u8, high: u8| AccountingEvent::octets(number(p, low).unwrap_or(0), number(p, high).unwrap_or(0));
    Some(AccountingEvent {
        status,
        event_time: crate::clock::now().saturating_sub(delay),
        nas_client: client.nas.name.clone(),
        acct_session_id: text(p, attr::ACCT_SESSION_ID),
        acct_multi_session_id: text(p, attr::ACCT_MULTI_SESSION_ID),
        organization,
        user_name,
        session_time: u64::from(number(p, attr::ACCT_SESSION_TIME).unwrap_or(0)),
        input_octets: octets(attr::ACCT_INPUT_OCTETS, attr::ACCT_INPUT_GIGAWORDS),
        output_octets: octets(attr::ACCT_OUTPUT_OCTETS, attr::ACCT_OUTPUT_GIGAWORDS),
        input_packets: u64::from(number(p, attr::ACCT_INPUT_PACKETS).unwrap_or(0)),
        output_packets: u64::from(number(p, attr::ACCT_OUTPUT_PACKETS).unwrap_or(0)),
        terminate_cause: number(p, attr::ACCT_TERMINATE_CAUSE),
        nas_identifier: text(p, attr::NAS_IDENTIFIER),
        nas_ip_address,
        nas_port: number(p, attr::NAS_PORT),
        nas_port_id: text(p, attr::NAS_PORT_ID),
        nas_port_type: number(p, attr::NAS_PORT_TYPE),
        service_type: number(p, attr::SERVICE_TYPE),
        framed_ip_address: ipv4(p, attr::FRAMED_IP_ADDRESS),
        framed_ip_netmask: ipv4(p, attr::FRAMED_IP_NETMASK),
        calling_station_id: text(p, attr::CALLING_STATION_ID),
        called_station_id: text(p, attr::CALLED_STATION_ID),
    })
}
