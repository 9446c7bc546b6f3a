//! Replies: their encoding (a Message-Authenticator first, then the attributes, then both authenticators
//! computed by [`super::crypto`]), and the Access-Accept attributes an organization maps from its users'
//! groups and roles.

use super::crypto::{self, attr};

/// A reply being written.
pub(crate) struct Reply {
    buf: Vec<u8>,
}

impl Reply {
    /// A reply of `code` to the request with `identifier`, with a Message-Authenticator as its first
    /// attribute (filled in by [`Reply::finish`]).
    pub(crate) fn new(code: u8, identifier: u8) -> Reply {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&[code, identifier, 0, 0]);
        buf.extend_from_slice(&[0; 16]);
        buf.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
        buf.extend_from_slice(&[0; 16]);
        Reply { buf }
    }

    /// Appends an attribute; a value longer than an attribute holds is cut at 253 bytes, and an attribute
    /// that would make the packet larger than 4096 bytes is left out (and logged).
    pub(crate) fn attr(&mut self, typ: u8, value: &[u8]) {
        let value = &value[..value.len().min(253)];
        if self.buf.len() + 2 + value.len() > super::MAX_PACKET {
            tracing::warn!(attribute = typ, "RADIUS reply full: attribute left out");
            return;
        }
        self.buf.push(typ);
        self.buf.push(2 + value.len() as u8);
        self.buf.extend_from_slice(value);
    }

    /// The finished reply: its Length, Message-Authenticator and Response Authenticator.
    pub(crate) fn finish(self, request_authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        self.signed(|buf| crypto::sign_reply(buf, request_authenticator, secret))
    }

    /// The finished Accounting-Response to an Accounting-Request (see [`crypto::sign_accounting_response`]).
    pub(crate) fn finish_accounting(self, request_authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        self.signed(|buf| crypto::sign_accounting_response(buf, request_authenticator, secret))
    }

    fn signed(mut self, sign: impl FnOnce(&mut [u8]) -> Result<(), crypto::Malformed>) -> Vec<u8> {
        let len = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        // A reply written by Reply is well formed: its length field and attributes are its own.
        if let Err(e) = sign(&mut self.buf) {
            tracing::error!("RADIUS reply not signed: {e}");
        }
        self.buf
    }
}

/// One attribute an Access-Accept can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyAttribute {
    Class(String),
    FilterId(String),
    SessionTimeout(u32),
    IdleTimeout(u32),
    ReplyMessage(String),
    /// A vendor-specific sub-attribute (RFC 2865 §5.26): vendor id, vendor type, value.
    Vendor {
        vendor: u32,
        typ: u8,
        value: Vec<u8>,
    },
}

impl ReplyAttribute {
    /// From its name in the configuration and its value: `Class`, `Filter-Id`, `Session-Timeout`,
    /// `Idle-Timeout`, `Reply-Message`, or `Vendor-<vendor id>-<type>` (e.g. `Vendor-9-1` for Cisco-AVPair),
    /// whose value is text, or bytes as `0x` and hex digits.
    pub fn parse(name: &str, value: &str) -> Result<ReplyAttribute, String> {
        let seconds = |v: &str| v.trim().parse::<u32>().map_err(|_| format!("{name} must be a number of seconds"));
        let text = |v: &str| {
            if v.len() > 253 {
                Err(format!("{name} is longer than a RADIUS attribute holds (253 bytes)"))
            } else {
                Ok(v.to_string())
            }
        };
        match name.to_ascii_lowercase().as_str() {
            "class" => Ok(ReplyAttribute::Class(text(value)?)),
            "filter-id" => Ok(ReplyAttribute::FilterId(text(value)?)),
            "session-timeout" => Ok(ReplyAttribute::SessionTimeout(seconds(value)?)),
            "idle-timeout" => Ok(ReplyAttribute::IdleTimeout(seconds(value)?)),
            "reply-message" => Ok(ReplyAttribute::ReplyMessage(text(value)?)),
            other => {
                let parts: Vec<&str> = other.splitn(3, '-').collect();
                let (vendor, typ) = match parts.as_slice() {
                    ["vendor", vendor, typ] => (vendor.parse::<u32>().ok(), typ.parse::<u8>().ok()),
                    _ => (None, None),
                };
                let (Some(vendor), Some(typ)) = (vendor, typ) else {
                    return Err(format!(
                        "unknown RADIUS reply attribute {name:?} (Class, Filter-Id, Session-Timeout, Idle-Timeout, \
                         Reply-Message or Vendor-<vendor id>-<type>)"
                    ));
                };
                let value = match value.strip_prefix("0x") {
                    Some(hex_digits) => hex::decode(hex_digits).map_err(|_| format!("{name}: bad hex value"))?,
                    None => value.as_bytes().to_vec(),
                };
                if value.len() > 247 {
                    return Err(format!("{name} is longer than a vendor attribute holds (247 bytes)"));
                }
                Ok(ReplyAttribute::Vendor { vendor, typ, value })
            }
        }
    }

    /// Its type and value.
    pub(crate) fn encode(&self) -> (u8, Vec<u8>) {
        match self {
            ReplyAttribute::Class(v) => (attr::CLASS, v.as_bytes().to_vec()),
            ReplyAttribute::FilterId(v) => (attr::FILTER_ID, v.as_bytes().to_vec()),
            ReplyAttribute::SessionTimeout(v) => (attr::SESSION_TIMEOUT, v.to_be_bytes().to_vec()),
            ReplyAttribute::IdleTimeout(v) => (attr::IDLE_TIMEOUT, v.to_be_bytes().to_vec()),
            ReplyAttribute::ReplyMessage(v) => (attr::REPLY_MESSAGE, v.as_bytes().to_vec()),
            // [`ReplyAttribute::parse`] keeps values within what an attribute holds.
            ReplyAttribute::Vendor { vendor, typ, value } => {
                (attr::VENDOR_SPECIFIC, crypto::vendor_value(*vendor, *typ, value).unwrap_or_default())
            }
        }
    }
}

/// Whom a [`ReplyRule`] applies to, within its organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleMatch {
    Everyone,
    /// Members of the group (its name, or `<organization>/<name>`).
    Group(String),
    /// Holders of the role (its name).
    Role(String),
}

/// Attributes an organization's Access-Accepts carry, for everyone or for a group or role.
#[derive(Debug, Clone)]
pub struct ReplyRule {
    pub organization: String,
    pub when: RuleMatch,
    pub attributes: Vec<ReplyAttribute>,
}

impl ReplyRule {
    /// Whether the rule applies to a user of `organization` in `groups` holding `roles`.
    pub(crate) fn applies(&self, organization: &str, groups: &[String], roles: &[String]) -> bool {
        if self.organization != organization {
            return false;
        }
        match &self.when {
            RuleMatch::Everyone => true,
            RuleMatch::Group(g) => groups.iter().any(|have| {
                have == g || have.split_once('/').is_some_and(|(org, name)| org == organization && name == g)
            }),
            RuleMatch::Role(r) => roles.iter().any(|have| have == r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_attributes_parse_from_their_names() {
        assert_eq!(ReplyAttribute::parse("Filter-Id", "staff"), Ok(ReplyAttribute::FilterId("staff".into())));
        assert_eq!(ReplyAttribute::parse("session-timeout", "3600"), Ok(ReplyAttribute::SessionTimeout(3600)));
        assert_eq!(
            ReplyAttribute::parse("Vendor-9-1", "shell:priv-lvl=15"),
            Ok(ReplyAttribute::Vendor { vendor: 9, typ: 1, value: b"shell:priv-lvl=15".to_vec() })
        );
        assert_eq!(
            ReplyAttribute::parse("Vendor-14823-2", "0x0a0b"),
            Ok(ReplyAttribute::Vendor { vendor: 14823, typ: 2, value: vec![10, 11] })
        );
        // Vendor id, then one sub-attribute (type, length, value): no second type-26 header.
        let vsa = ReplyAttribute::Vendor { vendor: 9, typ: 1, value: b"ab".to_vec() };
        assert_eq!(vsa.encode(), (attr::VENDOR_SPECIFIC, vec![0, 0, 0, 9, 1, 4, b'a', b'b']));
        assert!(ReplyAttribute::parse("Session-Timeout", "soon").is_err());
        assert!(ReplyAttribute::parse("Framed-Pool", "x").is_err());
        assert!(ReplyAttribute::parse("Vendor-x-1", "x").is_err());
        assert!(ReplyAttribute::parse("Class", &"x".repeat(254)).is_err());
    }

    /// A vendor attribute is written once: type 26, its length, then the vendor id and the sub-attribute
    /// (RFC 2865 §5.26), not a whole attribute inside another.
    #[test]
    fn vendor_attributes_are_wrapped_once() {
        let a = ReplyAttribute::parse("Vendor-9-1", "shell:priv-lvl=15").unwrap();
        let (typ, value) = a.encode();
        assert_eq!(typ, attr::VENDOR_SPECIFIC);
        assert_eq!(&value[..6], &[0, 0, 0, 9, 1, 2 + 17]);
        assert_eq!(&value[6..], b"shell:priv-lvl=15");
        let mut r = Reply::new(2, 7);
        r.attr(typ, &value);
        let bytes = r.finish(&[1; 16], b"secret");
        let range = crypto::find_vendor_attribute(&bytes, 9, 1).unwrap().expect("found in the reply");
        assert_eq!(&bytes[range], b"shell:priv-lvl=15");
    }

    #[test]
    fn rules_match_organization_groups_and_roles() {
        let rule = |when| ReplyRule { organization: "acme".into(), when, attributes: vec![] };
        let groups = vec!["acme/staff".to_string()];
        let roles = vec!["admin".to_string()];
        assert!(rule(RuleMatch::Everyone).applies("acme", &[], &[]));
        assert!(!rule(RuleMatch::Everyone).applies("globex", &[], &[]));
        assert!(rule(RuleMatch::Group("staff".into())).applies("acme", &groups, &roles));
        assert!(rule(RuleMatch::Group("acme/staff".into())).applies("acme", &groups, &roles));
        assert!(!rule(RuleMatch::Group("vip".into())).applies("acme", &groups, &roles));
        assert!(rule(RuleMatch::Role("admin".into())).applies("acme", &groups, &roles));
        assert!(!rule(RuleMatch::Role("ops".into())).applies("acme", &groups, &roles));
    }

    #[test]
    fn a_reply_is_cut_to_what_a_packet_holds() {
        let mut r = Reply::new(2, 7);
        for _ in 0..40 {
            r.attr(attr::REPLY_MESSAGE, &[b'x'; 300]);
        }
        let bytes = r.finish(&[1; 16], b"secret");
        assert!(bytes.len() <= crate::radius::MAX_PACKET);
        assert_eq!(usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), bytes.len());
        assert_eq!(bytes[20], attr::MESSAGE_AUTHENTICATOR);
    }
}
