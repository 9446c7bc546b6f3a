//! Search and Compare: LDAP requests turned into [`crate::directory`] searches, and the answers back into
//! entries, controls (Simple Paged Results, RFC 2696) and result codes. Also the root DSE and the
//! subschema entry, which describe the server rather than the directory.

use std::hash::{Hash, Hasher};

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapCompareRequest, LdapFilter, LdapMsg, LdapOp, LdapResult, LdapResultCode, LdapSearchRequest, LdapSearchScope,
};

use super::ber::{self, Reply};
use super::{result, Session, Shared, OID_STARTTLS, OID_WHOAMI};
use crate::directory::{self, DirectoryError, Entry, Filter, Position, Scope, Search, SUBSCHEMA_DN};

/// The Simple Paged Results control (RFC 2696).
const OID_PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";
/// "All operational attributes" (`+`, RFC 3673).
const FEATURE_ALL_OPERATIONAL: &str = "1.3.6.1.4.1.4203.1.5.1";

/// Turns a decoded filter into the directory's.
pub(crate) fn filter(f: &LdapFilter) -> Filter {
    match f {
        LdapFilter::And(fs) => Filter::And(fs.iter().map(filter).collect()),
        LdapFilter::Or(fs) => Filter::Or(fs.iter().map(filter).collect()),
        LdapFilter::Not(f) => Filter::Not(Box::new(filter(f))),
        LdapFilter::Equality(a, v) => Filter::Equal(a.clone(), v.clone()),
        LdapFilter::Substring(a, s) => Filter::Substrings {
            attribute: a.clone(),
            initial: s.initial.clone(),
            any: s.any.clone(),
            last: s.final_.clone(),
        },
        LdapFilter::GreaterOrEqual(a, v) => Filter::GreaterOrEqual(a.clone(), v.clone()),
        LdapFilter::LessOrEqual(a, v) => Filter::LessOrEqual(a.clone(), v.clone()),
        LdapFilter::Present(a) => Filter::Present(a.clone()),
        LdapFilter::Approx(a, v) => Filter::Approx(a.clone(), v.clone()),
        LdapFilter::Extensible(_) => Filter::Undefined,
    }
}

/// Which attributes a search asked for (RFC 4511 §4.5.1.8, RFC 3673).
struct Selection {
    all_user: bool,
    all_operational: bool,
    /// Named attributes, lower-cased.
    named: Vec<String>,
}

impl Selection {
    fn of(attrs: &[String]) -> Selection {
        let only_none = attrs.len() == 1 && attrs[0] == "1.1";
        Selection {
            all_user: attrs.is_empty() || attrs.iter().any(|a| a == "*"),
            all_operational: attrs.iter().any(|a| a == "+"),
            named: if only_none {
                Vec::new()
            } else {
                attrs.iter().filter(|a| *a != "*" && *a != "+" && *a != "1.1").map(|a| a.to_lowercase()).collect()
            },
        }
    }

    /// Whether an attribute of this canonical name is returned.
    fn wants(&self, name: &str, operational: bool) -> bool {
        (if operational { self.all_operational } else { self.all_user })
            || self.named.iter().any(|n| n.eq_ignore_ascii_case(name) || directory::canonical(n) == Some(name))
    }
}

/// A search result entry with the selected attributes, encoded.
fn encode_entry(id: i32, e: &Entry, sel: &Selection, types_only: bool) -> Reply {
    let chosen: Vec<(&str, &[String])> = e
        .attributes
        .iter()
        .map(|a| (a, false))
        .chain(e.operational.iter().map(|a| (a, true)))
        .filter(|(a, operational)| sel.wants(a.name, *operational))
        .map(|(a, _)| (a.name, a.values.as_slice()))
        .collect();
    Reply::Encoded(ber::search_entry(id, &e.dn, &chosen, types_only))
}

/// A fingerprint of a search, so that a paging cookie is only taken back by the search it came from.
fn fingerprint(req: &LdapSearchRequest, viewer: &directory::Viewer) -> [u8; 8] {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.base.to_lowercase().hash(&mut h);
    (req.scope.clone() as i64).hash(&mut h);
    req.filter.hash(&mut h);
    format!("{viewer:?}").hash(&mut h);
    h.finish().to_be_bytes()
}

fn done(id: i32, code: LdapResultCode, message: &str, ctrl: Vec<LdapControl>) -> Reply {
    if ctrl.is_empty() {
        return Reply::Encoded(ber::result_done(id, code, message));
    }
    LdapMsg::new_with_ctrls(id, LdapOp::SearchResultDone(result(code, message)), ctrl).into()
}

pub(super) async fn search(
    shared: &Shared,
    session: &Session,
    id: i32,
    req: LdapSearchRequest,
    controls: Vec<LdapControl>,
) -> Vec<Reply> {
    let sel = Selection::of(&req.attrs);
    let f = filter(&req.filter);
    // The root DSE and the subschema describe the server: anyone may read them.
    if req.base.trim().is_empty() && req.scope == LdapSearchScope::Base {
        let mut out = Vec::new();
        if let Some(e) = root_dse(shared, session).filter(|e| f.matches(e)) {
            out.push(encode_entry(id, &e, &sel, req.typesonly));
        }
        shared.edge.metrics.ldap_search(out.len() as u64);
        out.push(done(id, LdapResultCode::Success, "", Vec::new()));
        return out;
    }
    if directory::parse_dn(&req.base)
        .is_some_and(|d| d.len() == 1 && d[0].key == "cn" && d[0].value.eq_ignore_ascii_case("subschema"))
    {
        let mut out = Vec::new();
        if req.scope != LdapSearchScope::OneLevel {
            let e = subschema();
            if f.matches(&e) {
                out.push(encode_entry(id, &e, &sel, req.typesonly));
            }
        }
        shared.edge.metrics.ldap_search(out.len() as u64);
        out.push(done(id, LdapResultCode::Success, "", Vec::new()));
        return out;
    }
    let scope = match req.scope {
        LdapSearchScope::Base => Scope::Base,
        LdapSearchScope::OneLevel => Scope::OneLevel,
        LdapSearchScope::Subtree => Scope::Subtree,
        LdapSearchScope::Children => Scope::Children,
    };
    let settings = &shared.settings;
    let paged = controls.iter().find_map(|c| match c {
        LdapControl::SimplePagedResults { size, cookie } => Some((*size, cookie.clone())),
        _ => None,
    });
    let critical_unknown = controls.iter().any(|c| matches!(c, LdapControl::Unknown { criticality: true, .. }));
    if critical_unknown {
        return vec![done(
            id,
            LdapResultCode::UnavailableCriticalExtension,
            "unsupported critical control",
            Vec::new(),
        )];
    }
    // Only paged searches hand out and take back cookies.
    let fp = if paged.is_some() { fingerprint(&req, &session.viewer) } else { [0; 8] };
    let mut after = None;
    let server_limit = settings.size_limit;
    let size_limit = match &paged {
        Some((size, cookie)) => {
            if !cookie.is_empty() {
                match cookie.split_at_checked(8).filter(|(f, _)| *f == fp).and_then(|(_, p)| Position::decode(p)) {
                    Some(p) => after = Some(p),
                    None => {
                        return vec![done(id, LdapResultCode::UnwillingToPerform, "invalid paging cookie", Vec::new())]
                    }
                }
            }
            if *size <= 0 {
                // A page size of 0 abandons the paged search (RFC 2696 §3).
                let ctrl = LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() };
                return vec![done(id, LdapResultCode::Success, "", vec![ctrl])];
            }
            (*size as usize).min(if server_limit == 0 { usize::MAX } else { server_limit })
        }
        None => match (req.sizelimit.max(0) as usize, server_limit) {
            (0, s) => s,
            (c, 0) => c,
            (c, s) => c.min(s),
        },
    };
    let time_limit = match req.timelimit {
        t if t > 0 => settings.time_limit.min(std::time::Duration::from_secs(t as u64)),
        _ => settings.time_limit,
    };
    let operational = sel.all_operational || sel.named.iter().any(|n| directory::is_operational(n));
    let viewer = session.viewer.clone();
    let directory = shared.directory.clone();
    let run = move |f: Filter, base: String| {
        let s = Search { base: &base, scope, filter: &f, size_limit, time_limit: Some(time_limit), after, operational };
        directory.search(&viewer, &s)
    };
    // A search no index covers reads every user of the organizations in scope: off the async workers.
    let found = if shared.directory.needs_scan(&f) {
        match tokio::task::spawn_blocking({
            let base = req.base.clone();
            move || run(f, base)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => Err(DirectoryError::Internal(format!("search task: {e}"))),
        }
    } else {
        run(f, req.base.clone())
    };
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            let code = match &e {
                DirectoryError::InvalidDn => LdapResultCode::InvalidDNSyntax,
                DirectoryError::NoSuchObject => LdapResultCode::NoSuchObject,
                DirectoryError::TimeLimit => LdapResultCode::TimeLimitExceeded,
                DirectoryError::BadCookie => LdapResultCode::UnwillingToPerform,
                DirectoryError::Internal(why) => {
                    tracing::error!("LDAP search: {why}");
                    LdapResultCode::OperationsError
                }
            };
            shared.edge.metrics.ldap_search(0);
            let message =
                if matches!(e, DirectoryError::Internal(_)) { "internal error".into() } else { e.to_string() };
            return vec![done(id, code, &message, Vec::new())];
        }
    };
    shared.edge.metrics.ldap_search(found.entries.len() as u64);
    let mut out: Vec<Reply> = Vec::with_capacity(found.entries.len() + 1);
    for e in &found.entries {
        out.push(encode_entry(id, e, &sel, req.typesonly));
    }
    match paged {
        Some(_) => {
            let cookie = match (&found.next, found.truncated) {
                (Some(p), true) => {
                    let mut c = fp.to_vec();
                    c.extend_from_slice(&p.encode());
                    c
                }
                _ => Vec::new(),
            };
            let ctrl = LdapControl::SimplePagedResults { size: 0, cookie };
            out.push(done(id, LdapResultCode::Success, "", vec![ctrl]));
        }
        None if found.truncated => {
            out.push(done(id, LdapResultCode::SizeLimitExceeded, "more entries match than the size limit", Vec::new()))
        }
        None => out.push(done(id, LdapResultCode::Success, "", Vec::new())),
    }
    out
}

pub(super) fn compare(shared: &Shared, session: &Session, req: LdapCompareRequest) -> LdapResult {
    if req.atype.eq_ignore_ascii_case("userPassword") {
        // A compare on a password would be a guessing oracle without lockout or timing floor.
        return result(LdapResultCode::InsufficentAccessRights, "userPassword cannot be compared; bind instead");
    }
    let Some(canon) = directory::canonical(&req.atype) else {
        return result(LdapResultCode::UndefinedAttributeType, "unknown attribute");
    };
    let entry = match shared.directory.entry(&session.viewer, &req.dn) {
        Ok(e) => e,
        Err(DirectoryError::InvalidDn) => return result(LdapResultCode::InvalidDNSyntax, "invalid DN"),
        Err(DirectoryError::Internal(why)) => {
            tracing::error!("LDAP compare: {why}");
            return result(LdapResultCode::OperationsError, "internal error");
        }
        Err(_) => return result(LdapResultCode::NoSuchObject, "no such object"),
    };
    if entry.get(canon).is_none() {
        return result(LdapResultCode::NoSuchAttribute, "the entry has no such attribute");
    }
    let Ok(value) = String::from_utf8(req.val) else {
        return result(LdapResultCode::CompareFalse, "");
    };
    if Filter::Equal(canon.to_string(), value).matches(&entry) {
        result(LdapResultCode::CompareTrue, "")
    } else {
        result(LdapResultCode::CompareFalse, "")
    }
}

/// The root DSE (RFC 4512 §5.1): what this server supports, and one naming context per organization the
/// client may see. Its attributes are operational: returned for `+` or by name.
fn root_dse(shared: &Shared, session: &Session) -> Option<Entry> {
    let contexts = match shared.directory.naming_contexts(&session.viewer) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("LDAP root DSE: {e}");
            return None;
        }
    };
    let a = |name: &'static str, values: Vec<&str>| directory::Attribute {
        name,
        values: values.into_iter().map(String::from).collect(),
    };
    let mut extensions = vec![OID_WHOAMI];
    if shared.tls.is_some() && shared.settings.starttls && !session.tls {
        extensions.push(OID_STARTTLS);
    }
    let mut op = vec![
        directory::Attribute { name: "namingContexts", values: contexts },
        a("supportedLDAPVersion", vec!["3"]),
        a("supportedControl", vec![OID_PAGED_RESULTS]),
        a("supportedExtension", extensions),
        a("supportedFeatures", vec![FEATURE_ALL_OPERATIONAL]),
        a("supportedSASLMechanisms", vec![]),
        a("subschemaSubentry", vec![SUBSCHEMA_DN]),
        a("vendorName", vec!["Jeton"]),
        a("vendorVersion", vec![env!("CARGO_PKG_VERSION")]),
    ];
    op.retain(|a| !a.values.is_empty());
    Some(Entry { dn: String::new(), attributes: vec![a("objectClass", vec!["top"])], operational: op })
}

/// The subschema entry (RFC 4512 §4.2): the object classes and attribute types entries use.
fn subschema() -> Entry {
    let a = |name: &'static str, values: &[&str]| directory::Attribute {
        name,
        values: values.iter().map(|s| s.to_string()).collect(),
    };
    Entry {
        dn: SUBSCHEMA_DN.to_string(),
        attributes: vec![
            a("objectClass", &["top", "subentry", "subschema", "extensibleObject"]),
            a("cn", &["Subschema"]),
        ],
        operational: vec![
            a("objectClasses", OBJECT_CLASSES),
            a("attributeTypes", ATTRIBUTE_TYPES),
            a("structuralObjectClass", &["subentry"]),
        ],
    }
}

const OBJECT_CLASSES: &[&str] = &[
    "( 2.5.6.0 NAME 'top' ABSTRACT MUST objectClass )",
    "( 2.5.6.5 NAME 'organizationalUnit' SUP top STRUCTURAL MUST ou MAY description )",
    "( 2.5.6.6 NAME 'person' SUP top STRUCTURAL MUST ( sn $ cn ) MAY ( userPassword $ description ) )",
    "( 2.5.6.7 NAME 'organizationalPerson' SUP person STRUCTURAL MAY ( title $ ou ) )",
    "( 2.16.840.1.113730.3.2.2 NAME 'inetOrgPerson' SUP organizationalPerson STRUCTURAL MAY ( displayName $ givenName $ mail $ mobile $ uid ) )",
    "( 1.3.6.1.1.1.2.0 NAME 'posixAccount' SUP top AUXILIARY MUST ( cn $ uid $ uidNumber $ gidNumber $ homeDirectory ) MAY ( loginShell $ gecos $ description ) )",
    "( 1.3.6.1.1.1.2.2 NAME 'posixGroup' SUP top AUXILIARY MUST ( cn $ gidNumber ) MAY ( memberUid $ description ) )",
    "( 2.5.6.9 NAME 'groupOfNames' SUP top STRUCTURAL MUST cn MAY ( member $ description ) )",
];

const ATTRIBUTE_TYPES: &[&str] = &[
    "( 2.5.4.0 NAME 'objectClass' EQUALITY objectIdentifierMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )",
    "( 2.5.4.41 NAME 'name' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
    "( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )",
    "( 2.5.4.4 NAME ( 'sn' 'surname' ) SUP name )",
    "( 2.5.4.42 NAME ( 'givenName' 'gn' ) SUP name )",
    "( 2.5.4.11 NAME ( 'ou' 'organizationalUnitName' ) SUP name )",
    "( 2.5.4.13 NAME 'description' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
    "( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
    "( 0.9.2342.19200300.100.1.3 NAME ( 'mail' 'email' ) EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )",
    "( 0.9.2342.19200300.100.1.41 NAME 'mobile' EQUALITY telephoneNumberMatch SUBSTR telephoneNumberSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.50 )",
    "( 2.16.840.1.113730.3.1.241 NAME 'displayName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )",
    "( 1.3.6.1.1.1.1.0 NAME 'uidNumber' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
    "( 1.3.6.1.1.1.1.1 NAME 'gidNumber' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
    "( 1.3.6.1.1.1.1.2 NAME 'gecos' EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )",
    "( 1.3.6.1.1.1.1.3 NAME 'homeDirectory' EQUALITY caseExactIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )",
    "( 1.3.6.1.1.1.1.4 NAME 'loginShell' EQUALITY caseExactIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )",
    "( 1.3.6.1.1.1.1.12 NAME 'memberUid' EQUALITY caseExactMatch SUBSTR caseExactSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
    "( 2.5.4.31 NAME 'member' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )",
    "( 1.2.840.113556.1.2.102 NAME 'memberOf' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 NO-USER-MODIFICATION USAGE dSAOperation )",
    "( 1.3.6.1.1.16.4 NAME 'entryUUID' EQUALITY UUIDMatch ORDERING UUIDOrderingMatch SYNTAX 1.3.6.1.1.16.1 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
    "( 1.3.6.1.1.20 NAME 'entryDN' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
    "( 2.5.18.1 NAME 'createTimestamp' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
    "( 2.5.18.2 NAME 'modifyTimestamp' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
    "( 2.5.21.9 NAME 'structuralObjectClass' EQUALITY objectIdentifierMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
    "( 2.5.18.10 NAME 'subschemaSubentry' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
    "( 2.5.18.9 NAME 'hasSubordinates' EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
];
