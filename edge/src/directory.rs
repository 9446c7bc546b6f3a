//! The directory: organizations, users and groups as LDAP-style entries built from the replicated state,
//! who may see which of them, filters, and searches answered from indexes. It knows no sockets and no LDAP
//! codec: the LDAP front end (`crate::ldap`) turns its messages into these types and the answers back.
//!
//! Layout (Casdoor-compatible where Casdoor is sound, COMPAT §8; the differences are in the README):
//! - an organization is `ou=<org>[,<rest>]`, where `<rest>` is whatever the client wrote after the
//!   organization in its search base (Casdoor accepts and echoes any `dc=` parts), else the configured
//!   suffix;
//! - a user is `uid=<name>,ou=<org>,<rest>` (`uid` carries the name, as most LDAP clients expect; the user's
//!   id is `entryUUID`);
//! - a group is `cn=<group>,ou=<org>,<rest>`, a `posixGroup` and a `groupOfNames`.
//!
//! Membership comes from `user.groups` only, so `memberOf` on users and `member`/`memberUid` on groups
//! always agree.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jeton_raft::model::{Group, Organization, User};
use jeton_raft::store::Record;
use jeton_raft::{RaftError, Store};

use crate::generation::GenerationCache;

/// Settings of the directory.
#[derive(Debug, Clone, Default)]
pub struct DirectoryConfig {
    /// Organization whose users are global administrators (Casdoor: `built-in`).
    pub admin_org: String,
    /// Written after `ou=<org>` in naming contexts and in the DNs of searches whose base has no `<rest>`
    /// (e.g. `dc=example,dc=com`); empty: none. A search whose base is the suffix covers every
    /// organization the client may see.
    pub suffix: String,
}

/// Who is asking: what a bind established.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Viewer {
    Anonymous,
    /// A user, by organization and name (re-read on every operation: a user disabled, deleted or demoted
    /// since the bind sees what they now may).
    User {
        owner: String,
        name: String,
    },
}

/// What a [`Viewer`] may see, as of now.
#[derive(Debug, Clone)]
enum Sight {
    Nothing,
    /// Every organization.
    Everything,
    /// Users, groups and the entry of one organization.
    Organization(String),
    /// One user's own entry.
    Own {
        owner: String,
        name: String,
    },
}

impl Sight {
    fn org(&self, org: &str) -> bool {
        match self {
            Sight::Everything => true,
            Sight::Organization(o) => o == org,
            _ => false,
        }
    }
    /// Whether `org` may be used as a search base (its members may search it for their own entry).
    fn org_base(&self, org: &str) -> bool {
        match self {
            Sight::Own { owner, .. } => owner == org,
            other => other.org(org),
        }
    }
    fn user(&self, owner: &str, name: &str) -> bool {
        match self {
            Sight::Own { owner: o, name: n } => o == owner && n == name,
            other => other.org(owner),
        }
    }
}

/// One attribute of an entry: its canonical name and values (each once).
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: &'static str,
    pub values: Vec<String>,
}

/// An entry as the directory answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub dn: String,
    /// User attributes (returned for `*`).
    pub attributes: Vec<Attribute>,
    /// Operational attributes (returned for `+` or by name).
    pub operational: Vec<Attribute>,
}

impl Entry {
    /// The values of an attribute (by any of its names, case-insensitive); `None` if the entry lacks it.
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        let canon = canonical(name)?;
        self.attributes.iter().chain(&self.operational).find(|a| a.name == canon)
    }
}

/// The attributes the directory knows: (canonical name, syntax). Any other name is unknown: a filter term
/// on it is Undefined, and it is never returned.
const ATTRIBUTES: &[(&str, Syntax)] = &[
    ("objectClass", Syntax::Text),
    ("ou", Syntax::Text),
    ("uid", Syntax::Text),
    ("cn", Syntax::Text),
    ("sn", Syntax::Text),
    ("givenName", Syntax::Text),
    ("displayName", Syntax::Text),
    ("mail", Syntax::Text),
    ("mobile", Syntax::Text),
    ("uidNumber", Syntax::Integer),
    ("gidNumber", Syntax::Integer),
    ("homeDirectory", Syntax::Text),
    ("loginShell", Syntax::Text),
    ("gecos", Syntax::Text),
    ("memberOf", Syntax::Dn),
    ("member", Syntax::Dn),
    ("memberUid", Syntax::Text),
    ("description", Syntax::Text),
    ("entryUUID", Syntax::Text),
    ("entryDN", Syntax::Dn),
    ("createTimestamp", Syntax::Text),
    ("modifyTimestamp", Syntax::Text),
    ("structuralObjectClass", Syntax::Text),
    ("subschemaSubentry", Syntax::Dn),
    ("hasSubordinates", Syntax::Text),
];

/// Other names clients use for the same attributes.
const ALIASES: &[(&str, &str)] = &[
    ("email", "mail"),
    ("commonname", "cn"),
    ("surname", "sn"),
    ("gn", "givenName"),
    ("userid", "uid"),
    ("organizationalunitname", "ou"),
];

/// The canonical name of an attribute, case-insensitively, or `None` if the directory does not know it.
pub fn canonical(name: &str) -> Option<&'static str> {
    if let Some((n, _)) = ATTRIBUTES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        return Some(n);
    }
    ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(name)).map(|(_, n)| *n)
}

fn syntax(canon: &str) -> Syntax {
    ATTRIBUTES.iter().find(|(n, _)| *n == canon).map(|(_, s)| *s).unwrap_or(Syntax::Text)
}

/// How values of an attribute are compared.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Syntax {
    /// Case-insensitive text.
    Text,
    /// Signed integers.
    Integer,
    /// Distinguished names, compared up to and including the organization (`cn=x,ou=org`), since the rest
    /// of a DN is whatever the client's base said.
    Dn,
}

/// A search filter (RFC 4511 §4.5.1), on attribute names as the client wrote them.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Equal(String, String),
    Substrings {
        attribute: String,
        initial: Option<String>,
        any: Vec<String>,
        last: Option<String>,
    },
    GreaterOrEqual(String, String),
    LessOrEqual(String, String),
    Present(String),
    Approx(String, String),
    /// A term the directory cannot evaluate (extensible match): Undefined.
    Undefined,
}

/// The three-valued result of a filter (RFC 4511 §4.5.1.7): `None` is Undefined.
type Truth = Option<bool>;

impl Filter {
    /// Whether `entry` matches (only True counts).
    pub fn matches(&self, entry: &Entry) -> bool {
        self.eval(entry) == Some(true)
    }

    fn eval(&self, entry: &Entry) -> Truth {
        match self {
            Filter::And(fs) | Filter::Or(fs) => {
                // AND stops at the first False, OR at the first True; an Undefined term makes the rest
                // Undefined instead of the other value.
                let stops_at = matches!(self, Filter::Or(_));
                let mut result = Some(!stops_at);
                for f in fs {
                    match f.eval(entry) {
                        Some(t) if t == stops_at => return Some(stops_at),
                        None => result = None,
                        Some(_) => {}
                    }
                }
                result
            }
            Filter::Not(f) => f.eval(entry).map(|t| !t),
            Filter::Present(a) => {
                if a.eq_ignore_ascii_case("objectClass") {
                    return Some(true);
                }
                Some(canonical(a).is_some() && entry.get(a).is_some_and(|v| !v.values.is_empty()))
            }
            Filter::Equal(a, v) => compare(entry, a, |s, x| equal(s, x, v)),
            Filter::Approx(a, v) => compare(entry, a, |s, x| match s {
                Syntax::Text => approx_key(x) == approx_key(v),
                _ => equal(s, x, v),
            }),
            Filter::GreaterOrEqual(a, v) => {
                compare(entry, a, |s, x| order(s, x, v).is_some_and(|o| o != std::cmp::Ordering::Less))
            }
            Filter::LessOrEqual(a, v) => {
                compare(entry, a, |s, x| order(s, x, v).is_some_and(|o| o != std::cmp::Ordering::Greater))
            }
            Filter::Substrings { attribute, initial, any, last } => compare(entry, attribute, |s, x| {
                s != Syntax::Integer && substrings(&x.to_lowercase(), initial, any, last)
            }),
            Filter::Undefined => None,
        }
    }
}

/// Evaluates a term on every value of an attribute: True if one value matches, Undefined for an attribute
/// the directory does not know.
fn compare(entry: &Entry, attribute: &str, test: impl Fn(Syntax, &str) -> bool) -> Truth {
    let canon = canonical(attribute)?;
    let s = syntax(canon);
    Some(entry.get(canon).is_some_and(|a| a.values.iter().any(|x| test(s, x))))
}

fn equal(s: Syntax, value: &str, assertion: &str) -> bool {
    match s {
        Syntax::Text => value.trim().eq_ignore_ascii_case(assertion.trim()) || fold(value) == fold(assertion),
        Syntax::Integer => match (value.trim().parse::<i64>(), assertion.trim().parse::<i64>()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        Syntax::Dn => match (dn_key(value), dn_key(assertion).or_else(|| group_id_key(assertion))) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
    }
}

fn order(s: Syntax, value: &str, assertion: &str) -> Option<std::cmp::Ordering> {
    match s {
        Syntax::Integer => Some(value.trim().parse::<i64>().ok()?.cmp(&assertion.trim().parse::<i64>().ok()?)),
        Syntax::Text => Some(fold(value).cmp(&fold(assertion))),
        Syntax::Dn => None,
    }
}

/// Case folding for text matching (Unicode lower case, surrounding spaces dropped, inner runs of spaces as
/// one, as caseIgnoreMatch prepares strings).
fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// What approximate matching compares: letters and digits only, lower-cased.
fn approx_key(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

fn substrings(value: &str, initial: &Option<String>, any: &[String], last: &Option<String>) -> bool {
    let mut rest = value;
    if let Some(i) = initial {
        match rest.strip_prefix(i.to_lowercase().as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for a in any {
        let a = a.to_lowercase();
        match rest.find(a.as_str()) {
            Some(p) => rest = &rest[p + a.len()..],
            None => return false,
        }
    }
    match last {
        Some(l) => rest.ends_with(l.to_lowercase().as_str()),
        None => true,
    }
}

/// One relative distinguished name component: attribute type (lower-cased) and value (unescaped).
#[derive(Debug, Clone, PartialEq)]
pub struct Rdn {
    pub key: String,
    pub value: String,
}

/// Parses a DN (RFC 4514: `,`-separated `type=value` pairs, `\`-escapes including `\XX` hex; a
/// multi-valued RDN's `+` parts become separate components). `None` for what is not a DN.
pub fn parse_dn(dn: &str) -> Option<Vec<Rdn>> {
    let mut out = Vec::new();
    if dn.trim().is_empty() {
        return Some(out);
    }
    let bytes = dn.as_bytes();
    let mut i = 0;
    loop {
        // type
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' {
            if matches!(bytes[i], b',' | b'+' | b'\\' | b'"') {
                return None;
            }
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let key = dn[start..i].trim().to_ascii_lowercase();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            return None;
        }
        i += 1;
        // value; unescaped spaces around it are not part of it (RFC 4514 §3)
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        let mut value: Vec<u8> = Vec::new();
        let mut trailing_escaped = 0;
        while i < bytes.len() && bytes[i] != b',' && bytes[i] != b'+' && bytes[i] != b';' {
            if bytes[i] == b'\\' {
                let next = *bytes.get(i + 1)?;
                if next.is_ascii_hexdigit() && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                    value.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 3;
                } else {
                    value.push(next);
                    i += 2;
                }
                trailing_escaped = value.len();
            } else {
                value.push(bytes[i]);
                i += 1;
            }
        }
        let keep = value.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1).max(trailing_escaped);
        value.truncate(keep);
        let value = String::from_utf8(value).ok()?;
        out.push(Rdn { key, value });
        if i >= bytes.len() {
            return Some(out);
        }
        i += 1;
    }
}

/// Escapes a value for a DN (RFC 4514 §2.4).
pub fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
            continue;
        }
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn join_dn(rdns: &[Rdn]) -> String {
    rdns.iter().map(|r| format!("{}={}", r.key, escape_dn_value(&r.value))).collect::<Vec<_>>().join(",")
}

/// A DN's comparison key: its components up to and including the first `ou=`, lower-cased. `None` when it
/// has no `ou=`.
fn dn_key(dn: &str) -> Option<String> {
    let rdns = parse_dn(dn)?;
    let end = rdns.iter().position(|r| r.key == "ou")?;
    Some(rdns[..=end].iter().map(|r| format!("{}={}", r.key, fold(&r.value))).collect::<Vec<_>>().join(","))
}

/// A Casdoor group id `org/name` as a [`dn_key`].
fn group_id_key(id: &str) -> Option<String> {
    let (org, name) = id.split_once('/')?;
    Some(format!("cn={},ou={}", fold(name), fold(org)))
}

/// FNV-1a, 32 bits: Casdoor's POSIX uid/gid for users and groups without one (COMPAT §8.3).
pub fn fnv1a32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// RFC 3339 (Casdoor's times) as GeneralizedTime (`YYYYMMDDHHMMSSZ`), or `None`.
fn generalized_time(rfc3339: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    let t = t.to_offset(time::UtcOffset::UTC);
    Some(format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

fn attr(name: &'static str, values: Vec<String>) -> Attribute {
    Attribute { name, values }
}

fn one(name: &'static str, value: impl Into<String>) -> Attribute {
    Attribute { name, values: vec![value.into()] }
}

/// Adds `name: value` when the value is not empty.
fn push_nonempty(out: &mut Vec<Attribute>, name: &'static str, value: &str) {
    if !value.is_empty() {
        out.push(one(name, value));
    }
}

/// The `ou=<org>,<rest>` part of DNs.
fn org_dn(org: &str, rest: &str) -> String {
    match rest {
        "" => format!("ou={}", escape_dn_value(org)),
        r => format!("ou={},{r}", escape_dn_value(org)),
    }
}

/// A user's DN under `rest`.
pub fn user_dn(owner: &str, name: &str, rest: &str) -> String {
    format!("uid={},{}", escape_dn_value(name), org_dn(owner, rest))
}

fn group_dn(owner: &str, name: &str, rest: &str) -> String {
    format!("cn={},{}", escape_dn_value(name), org_dn(owner, rest))
}

/// The group ids (`owner`, `name`) a user belongs to.
fn groups_of(u: &User) -> impl Iterator<Item = (&str, &str)> {
    u.groups.iter().filter(|g| !g.is_empty()).map(|g| g.split_once('/').unwrap_or((u.owner.as_str(), g.as_str())))
}

/// A user's POSIX uid number.
fn uid_number(u: &User) -> i64 {
    if u.uid_number != 0 {
        u.uid_number
    } else {
        fnv1a32(&u.name) as i64
    }
}

fn group_gid_number(g: &Group) -> i64 {
    if g.gid_number != 0 {
        g.gid_number
    } else {
        fnv1a32(&g.name) as i64
    }
}

/// The operational attributes (RFC 4512 §3.4): returned for `+` or by name, and built only then or when a
/// filter names one.
const OPERATIONAL: [&str; 7] = [
    "entryUUID",
    "entryDN",
    "createTimestamp",
    "modifyTimestamp",
    "structuralObjectClass",
    "subschemaSubentry",
    "hasSubordinates",
];

/// Whether `name` (any spelling) is an operational attribute.
pub fn is_operational(name: &str) -> bool {
    canonical(name).is_some_and(|c| OPERATIONAL.contains(&c))
}

impl Filter {
    /// Whether the filter names an operational attribute anywhere.
    fn names_operational(&self) -> bool {
        match self {
            Filter::And(fs) | Filter::Or(fs) => fs.iter().any(Filter::names_operational),
            Filter::Not(f) => f.names_operational(),
            Filter::Equal(a, _)
            | Filter::GreaterOrEqual(a, _)
            | Filter::LessOrEqual(a, _)
            | Filter::Approx(a, _)
            | Filter::Present(a)
            | Filter::Substrings { attribute: a, .. } => is_operational(a),
            Filter::Undefined => false,
        }
    }
}

/// A user's entry under `rest`, with its operational attributes when `operational`.
pub fn user_entry(u: &User, rest: &str, operational: bool) -> Entry {
    user_entry_in(u, groups_of(u), rest, operational)
}

/// [`user_entry`] with `memberOf` naming `groups` (owner, name).
fn user_entry_in<'a>(
    u: &User,
    groups: impl IntoIterator<Item = (&'a str, &'a str)>,
    rest: &str,
    operational: bool,
) -> Entry {
    let dn = user_dn(&u.owner, &u.name, rest);
    let number = uid_number(u).to_string();
    let mut a = Vec::with_capacity(16);
    a.push(attr(
        "objectClass",
        ["top", "person", "organizationalPerson", "inetOrgPerson", "posixAccount"].map(String::from).to_vec(),
    ));
    a.push(one("uid", &u.name));
    a.push(one("cn", &u.name));
    a.push(one("sn", if u.last_name.is_empty() { &u.name } else { &u.last_name }));
    push_nonempty(&mut a, "givenName", &u.first_name);
    push_nonempty(&mut a, "displayName", &u.display_name);
    push_nonempty(&mut a, "mail", &u.email);
    push_nonempty(&mut a, "mobile", &u.phone);
    a.push(one("uidNumber", number.clone()));
    a.push(one("gidNumber", number));
    a.push(one("homeDirectory", format!("/home/{}", u.name)));
    a.push(one("loginShell", u.properties.get("loginShell").filter(|s| !s.is_empty()).map_or("/bin/bash", |s| s)));
    a.push(one("gecos", if u.display_name.is_empty() { &u.name } else { &u.display_name }));
    let mut member_of: Vec<String> = Vec::new();
    for (owner, name) in groups {
        let dn = group_dn(owner, name, rest);
        if !member_of.contains(&dn) {
            member_of.push(dn);
        }
    }
    if !member_of.is_empty() {
        a.push(attr("memberOf", member_of));
    }
    if !operational {
        return Entry { dn, attributes: a, operational: Vec::new() };
    }
    let mut op = vec![
        one("entryUUID", &u.id),
        one("entryDN", dn.clone()),
        one("structuralObjectClass", "inetOrgPerson"),
        one("subschemaSubentry", SUBSCHEMA_DN),
        one("hasSubordinates", "FALSE"),
    ];
    if let Some(t) = generalized_time(&u.created_time) {
        op.push(one("createTimestamp", t));
    }
    if let Some(t) = generalized_time(if u.updated_time.is_empty() { &u.created_time } else { &u.updated_time }) {
        op.push(one("modifyTimestamp", t));
    }
    Entry { dn, attributes: a, operational: op }
}

/// A group's entry under `rest`, with its members (users whose `groups` name it).
fn group_entry(g: &Group, members: &[User], rest: &str, operational: bool) -> Entry {
    let dn = group_dn(&g.owner, &g.name, rest);
    let mut a = vec![
        attr("objectClass", ["top", "posixGroup", "groupOfNames"].map(String::from).to_vec()),
        one("cn", &g.name),
        one("gidNumber", group_gid_number(g).to_string()),
    ];
    push_nonempty(&mut a, "description", &g.display_name);
    if !members.is_empty() {
        a.push(attr("memberUid", members.iter().map(|u| u.name.clone()).collect()));
        a.push(attr("member", members.iter().map(|u| user_dn(&u.owner, &u.name, rest)).collect()));
    }
    if !operational {
        return Entry { dn, attributes: a, operational: Vec::new() };
    }
    let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("jeton-group:{}/{}", g.owner, g.name).as_bytes());
    let mut op = vec![
        one("entryUUID", uuid.to_string()),
        one("entryDN", dn.clone()),
        one("structuralObjectClass", "groupOfNames"),
        one("subschemaSubentry", SUBSCHEMA_DN),
        one("hasSubordinates", "FALSE"),
    ];
    if let Some(t) = generalized_time(&g.created_time) {
        op.push(one("createTimestamp", t.clone()));
        op.push(one("modifyTimestamp", t));
    }
    Entry { dn, attributes: a, operational: op }
}

fn org_entry(o: &Organization, rest: &str, operational: bool) -> Entry {
    let dn = org_dn(&o.name, rest);
    let mut a = vec![attr("objectClass", vec!["top".into(), "organizationalUnit".into()]), one("ou", &o.name)];
    push_nonempty(&mut a, "description", &o.display_name);
    if !operational {
        return Entry { dn, attributes: a, operational: Vec::new() };
    }
    let mut op = vec![
        one("entryDN", dn.clone()),
        one("structuralObjectClass", "organizationalUnit"),
        one("subschemaSubentry", SUBSCHEMA_DN),
        one("hasSubordinates", "TRUE"),
    ];
    if let Some(t) = generalized_time(&o.created_time) {
        op.push(one("createTimestamp", t.clone()));
        op.push(one("modifyTimestamp", t));
    }
    Entry { dn, attributes: a, operational: op }
}

/// The DN of the subschema entry.
pub const SUBSCHEMA_DN: &str = "cn=Subschema";

/// Search scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Base,
    OneLevel,
    Subtree,
    /// Everything below the base, not the base itself.
    Children,
}

/// Where a search starts, after parsing its base DN.
#[derive(Debug, Clone, PartialEq)]
enum Base {
    /// The suffix (or `ou=*`): every organization the viewer may see.
    AllOrganizations {
        rest: String,
        wildcard: bool,
    },
    Organization {
        org: String,
        rest: String,
    },
    /// `uid=<name>,ou=<org>` or Casdoor's `uid=<id>,cn=<name>,ou=<org>`.
    User {
        org: String,
        name: String,
        rest: String,
    },
    /// `cn=<name>,ou=<org>`: a group, else a user of that name (Casdoor's bind DN form).
    GroupOrUser {
        org: String,
        name: String,
        rest: String,
    },
    /// Something under an organization that cannot name one of its entries.
    Nothing,
}

/// Why a search or compare was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DirectoryError {
    #[error("invalid DN")]
    InvalidDn,
    #[error("no such object")]
    NoSuchObject,
    #[error("the search took longer than its time limit")]
    TimeLimit,
    #[error("the paging cookie does not belong to this search")]
    BadCookie,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RaftError> for DirectoryError {
    fn from(e: RaftError) -> Self {
        DirectoryError::Internal(e.to_string())
    }
}

/// A search to run.
#[derive(Debug, Clone)]
pub struct Search<'a> {
    pub base: &'a str,
    pub scope: Scope,
    pub filter: &'a Filter,
    /// Most entries to return; 0: no limit.
    pub size_limit: usize,
    pub time_limit: Option<Duration>,
    /// Resume after this position (from a previous page's [`Found::next`]).
    pub after: Option<Position>,
    /// Build the operational attributes (the client asked for them); they are built anyway when the filter
    /// names one.
    pub operational: bool,
}

/// Where a search stands in the directory's order: organizations by name; in each, the organization
/// entry, then its groups, then its users, each by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub org: String,
    /// 0 organization, 1 groups, 2 users.
    pub phase: u8,
    pub name: String,
}

impl Position {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.org.len() + self.name.len() + 3);
        v.extend_from_slice(self.org.as_bytes());
        v.push(0);
        v.push(self.phase);
        v.push(0);
        v.extend_from_slice(self.name.as_bytes());
        v
    }
    pub fn decode(b: &[u8]) -> Option<Position> {
        let z = b.iter().position(|c| *c == 0)?;
        let org = std::str::from_utf8(&b[..z]).ok()?.to_string();
        let phase = *b.get(z + 1)?;
        if *b.get(z + 2)? != 0 || phase > 2 {
            return None;
        }
        let name = std::str::from_utf8(&b[z + 3..]).ok()?.to_string();
        Some(Position { org, phase, name })
    }
}

/// What a search found.
#[derive(Debug, Default)]
pub struct Found {
    pub entries: Vec<Entry>,
    /// More entries matched than the size limit allowed; `next` is where the next page starts.
    pub truncated: bool,
    pub next: Option<Position>,
}

/// The directory over one node's state.
pub struct Directory {
    store: Store,
    config: DirectoryConfig,
    /// What each viewer may see: worked out again once the state changes (a user disabled, deleted or
    /// demoted since their bind sees what they now may).
    sights: GenerationCache<Viewer, Sight>,
    /// The stored name of an organization named in a DN, in any case.
    orgs: GenerationCache<String, Option<String>>,
    /// The users of an organization a name matches ignoring case (the equality searches on `uid` and `cn`
    /// that LDAP clients send for every login), decoded.
    named: GenerationCache<(String, String), Arc<[Arc<User>]>>,
    /// Whether a group exists (a user's `memberOf` lists only existing ones).
    groups: GenerationCache<(String, String), bool>,
}

impl Directory {
    pub fn new(store: Store, config: DirectoryConfig) -> Directory {
        Directory {
            store,
            config,
            sights: GenerationCache::new(100_000),
            orgs: GenerationCache::new(10_000),
            named: GenerationCache::new(100_000),
            groups: GenerationCache::new(100_000),
        }
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// Whether a search with this filter reads every user of the organizations in scope (no index covers
    /// it): the caller then runs it where a long computation blocks nobody.
    pub fn needs_scan(&self, filter: &Filter) -> bool {
        let p = plan(filter);
        p.users && p.lookups.is_none()
    }

    /// What `viewer` may see now.
    fn sight(&self, viewer: &Viewer) -> Result<Sight, DirectoryError> {
        self.sights.get(&self.store, viewer, || self.read_sight(viewer))
    }

    fn read_sight(&self, viewer: &Viewer) -> Result<Sight, DirectoryError> {
        let Viewer::User { owner, name } = viewer else {
            return Ok(Sight::Nothing);
        };
        let Some(rec) = self.store.user(owner, name)? else {
            return Ok(Sight::Nothing);
        };
        let u = rec.get();
        if u.is_forbidden || u.is_deleted {
            return Ok(Sight::Nothing);
        }
        Ok(if owner == &self.config.admin_org {
            Sight::Everything
        } else if u.is_admin {
            Sight::Organization(owner.clone())
        } else {
            Sight::Own { owner: owner.clone(), name: name.clone() }
        })
    }

    /// The bind DN of a user (what Who am I answers).
    pub fn bound_dn(&self, viewer: &Viewer) -> String {
        match viewer {
            Viewer::Anonymous => String::new(),
            Viewer::User { owner, name } => user_dn(owner, name, &self.config.suffix),
        }
    }

    /// The naming contexts `viewer` may see: one per organization (its members see their own).
    pub fn naming_contexts(&self, viewer: &Viewer) -> Result<Vec<String>, DirectoryError> {
        let sight = self.sight(viewer)?;
        let mut out = Vec::new();
        for o in self.store.organizations() {
            let o = o?;
            let name = o.get().name.as_str();
            if sight.org_base(name) {
                out.push(org_dn(name, &self.config.suffix));
            }
        }
        Ok(out)
    }

    fn parse_base(&self, base: &str) -> Result<Base, DirectoryError> {
        let rdns = parse_dn(base).ok_or(DirectoryError::InvalidDn)?;
        let Some(at) = rdns.iter().rposition(|r| r.key == "ou") else {
            let suffix = parse_dn(&self.config.suffix).unwrap_or_default();
            if !suffix.is_empty() && rdns.len() == suffix.len() && dn_eq(&rdns, &suffix) {
                return Ok(Base::AllOrganizations { rest: join_dn(&rdns), wildcard: false });
            }
            return Err(DirectoryError::NoSuchObject);
        };
        let org = rdns[at].value.clone();
        let rest = if at + 1 < rdns.len() { join_dn(&rdns[at + 1..]) } else { self.config.suffix.clone() };
        if org == "*" {
            return Ok(if at == 0 { Base::AllOrganizations { rest, wildcard: true } } else { Base::Nothing });
        }
        let above = &rdns[..at];
        Ok(match above {
            [] => Base::Organization { org, rest },
            [r] if r.key == "uid" => Base::User { org, name: r.value.clone(), rest },
            [r] if r.key == "cn" => Base::GroupOrUser { org, name: r.value.clone(), rest },
            [u, c] if u.key == "uid" && c.key == "cn" => Base::User { org, name: c.value.clone(), rest },
            _ => Base::Nothing,
        })
    }

    /// The organization named `name`, ignoring case (DN values compare that way): its stored name.
    pub fn resolve_org(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        self.orgs.get(&self.store, name, || self.read_org(name))
    }

    fn read_org(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        if self.store.organization(name)?.is_some() {
            return Ok(Some(name.to_string()));
        }
        for o in self.store.organizations() {
            let o = o?;
            if o.get().name.eq_ignore_ascii_case(name) {
                return Ok(Some(o.get().name.to_string()));
            }
        }
        Ok(None)
    }

    /// Runs a search for `viewer`. Anonymous viewers find nothing; entries the viewer may not see are
    /// treated as absent (a base outside what it may see is [`DirectoryError::NoSuchObject`], exactly as
    /// one that does not exist).
    pub fn search(&self, viewer: &Viewer, s: &Search) -> Result<Found, DirectoryError> {
        let started = Instant::now();
        let mut base = self.parse_base(s.base)?;
        let sight = self.sight(viewer)?;
        // Organization names in DNs compare ignoring case: use the stored one.
        if let Base::Organization { org, .. } | Base::User { org, .. } | Base::GroupOrUser { org, .. } = &mut base {
            match self.resolve_org(org)? {
                Some(stored) => *org = stored,
                None if matches!(sight, Sight::Nothing) => return Ok(Found::default()),
                None => return Err(DirectoryError::NoSuchObject),
            }
        }
        // The directory is flat below each organization: its children are one level down, and the
        // children of a user or a group are none.
        let scope = match (&base, s.scope) {
            (Base::AllOrganizations { .. }, Scope::Children) => Scope::Subtree,
            (_, Scope::Children) => Scope::OneLevel,
            (_, other) => other,
        };
        if matches!(sight, Sight::Nothing) {
            return Ok(Found::default());
        }
        let op = s.operational || s.filter.names_operational();
        let mut run = Run { s, started, found: Found::default(), checked: 0, op };
        match base {
            Base::AllOrganizations { rest, wildcard } => {
                let orgs: Vec<String> = self
                    .store
                    .organizations()
                    .map(|o| o.map(|o| o.get().name.to_string()))
                    .collect::<Result<_, _>>()?;
                let orgs: Vec<String> = orgs.into_iter().filter(|o| sight.org_base(o)).collect();
                // `ou=*` stands for each organization itself (Casdoor); the suffix is their parent.
                let (org_scope, skip) = match (wildcard, scope) {
                    (true, scope) => (scope, false),
                    (false, Scope::Base) => (Scope::Base, true),
                    (false, Scope::OneLevel) => (Scope::Base, false),
                    (false, Scope::Subtree | Scope::Children) => (Scope::Subtree, false),
                };
                if !skip {
                    for org in orgs {
                        if !self.org_search(&sight, &org, &rest, org_scope, &mut run)? {
                            break;
                        }
                    }
                }
            }
            Base::Organization { org, rest } => {
                // It exists: `resolve_org` found it.
                if !sight.org_base(&org) {
                    return Err(DirectoryError::NoSuchObject);
                }
                self.org_search(&sight, &org, &rest, scope, &mut run)?;
            }
            Base::User { org, name, rest } => {
                let u = self.find_user(&org, &name)?.filter(|u| sight.user(&u.owner, &u.name));
                let Some(u) = u else { return Err(DirectoryError::NoSuchObject) };
                if scope != Scope::OneLevel {
                    let pos = Position { org: org.clone(), phase: 2, name: u.name.clone() };
                    run.offer(pos, || self.user_entry(&u, &rest, op))?;
                }
            }
            Base::GroupOrUser { org, name, rest } => {
                if let Some(g) = self.find_group(&org, &name)?.filter(|_| sight.org(&org)) {
                    if scope != Scope::OneLevel {
                        let members = self.members(&g)?;
                        let pos = Position { org: org.clone(), phase: 1, name: g.name.clone() };
                        run.offer(pos, || Ok(group_entry(&g, &members, &rest, op)))?;
                    }
                } else {
                    let u = self.find_user(&org, &name)?.filter(|u| sight.user(&u.owner, &u.name));
                    let Some(u) = u else { return Err(DirectoryError::NoSuchObject) };
                    if scope != Scope::OneLevel {
                        let pos = Position { org: org.clone(), phase: 2, name: u.name.clone() };
                        run.offer(pos, || self.user_entry(&u, &rest, op))?;
                    }
                }
            }
            Base::Nothing => return Err(DirectoryError::NoSuchObject),
        }
        Ok(run.found)
    }

    /// Searches one organization. Returns false once the search must stop (size limit reached).
    fn org_search(
        &self,
        sight: &Sight,
        org: &str,
        rest: &str,
        scope: Scope,
        run: &mut Run,
    ) -> Result<bool, DirectoryError> {
        if let Some(after) = &run.s.after {
            if after.org.as_str() > org {
                return Ok(true);
            }
        }
        let op = run.op;
        let plan = plan(run.s.filter);
        // An equality the indexes answer names an attribute organization entries lack.
        if scope != Scope::OneLevel && sight.org(org) && plan.lookups.is_none() {
            if let Some(o) = self.store.organization(org)? {
                let pos = Position { org: org.to_string(), phase: 0, name: String::new() };
                if !run.offer(pos, || Ok(org_entry(&o.to_owned()?, rest, op)))? {
                    return Ok(false);
                }
            }
        }
        if scope == Scope::Base {
            return Ok(true);
        }
        // Groups: only administrators see them; an organization has few.
        if sight.org(org) && plan.groups {
            let mut groups: Vec<Group> = Vec::new();
            for g in self.store.groups(org) {
                groups.push(g?.to_owned()?);
            }
            groups.sort_by(|a, b| a.name.cmp(&b.name));
            for g in groups {
                let pos = Position { org: org.to_string(), phase: 1, name: g.name.clone() };
                if !run.offer(pos, || Ok(group_entry(&g, &self.members(&g)?, rest, op)))? {
                    return Ok(false);
                }
            }
        }
        if !plan.users {
            return Ok(true);
        }
        let visible = |u: &User| sight.user(&u.owner, &u.name);
        match self.candidates(org, &plan.lookups)? {
            Some(mut users) => {
                users.sort_by(|a, b| a.name.cmp(&b.name));
                users.dedup_by(|a, b| a.name == b.name);
                for u in users.into_iter().filter(|u| visible(u)) {
                    let pos = Position { org: org.to_string(), phase: 2, name: u.name.clone() };
                    if !run.offer(pos, || self.user_entry(&u, rest, op))? {
                        return Ok(false);
                    }
                }
            }
            None => {
                if let Sight::Own { owner, name } = sight {
                    // An ordinary user sees one entry: no need to look at the others.
                    if let Some(u) = self.store.user(owner, name)? {
                        let u = u.to_owned()?;
                        let pos = Position { org: org.to_string(), phase: 2, name: u.name.clone() };
                        if !run.offer(pos, || self.user_entry(&u, rest, op))? {
                            return Ok(false);
                        }
                    }
                    return Ok(true);
                }
                let start = match &run.s.after {
                    Some(a) if a.org == org && a.phase == 2 => Some(a.name.clone()),
                    _ => None,
                };
                for rec in self.store.users_after(org, start.as_deref()) {
                    let rec = rec?;
                    let pos = Position { org: org.to_string(), phase: 2, name: rec.get().name.to_string() };
                    let rest = rest.to_string();
                    if !run.offer(pos, || self.user_entry(&rec.to_owned()?, &rest, op))? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Users of `org` that can match, from the indexes; `None` when the filter needs a scan.
    fn candidates(&self, org: &str, lookups: &Option<Vec<Lookup>>) -> Result<Option<Vec<Arc<User>>>, DirectoryError> {
        let Some(lookups) = lookups else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for l in lookups {
            match l {
                Lookup::Name(n) => out.extend(self.named(org, n)?.iter().cloned()),
                Lookup::Mail(m) => out.extend(decoded(&self.store.users_with_email(org, m)?)?),
                Lookup::Id(id) => {
                    // UUIDs compare ignoring case; ids are stored as they came.
                    let (lower, upper) = (id.to_lowercase(), id.to_uppercase());
                    let mut tried: Vec<&str> = vec![id.as_str()];
                    for variant in [lower.as_str(), upper.as_str()] {
                        if !tried.contains(&variant) {
                            tried.push(variant);
                        }
                    }
                    for variant in tried {
                        if let Some(u) = self.store.user_by_id(variant)? {
                            let u = u.to_owned()?;
                            if u.owner == org {
                                out.push(Arc::new(u));
                            }
                        }
                    }
                }
                Lookup::MemberOf(dn) => {
                    let group = match group_of_key(dn) {
                        Some((g_org, g_name)) => self.resolve_org(&g_org)?.map(|o| (o, g_name)),
                        None => None,
                    };
                    if let Some((g_org, g_name)) = group {
                        if let Some(g) = self.find_group(&g_org, &g_name)? {
                            let members = self.store.group_members(&g.owner, &g.name)?;
                            out.extend(decoded(&members)?.into_iter().filter(|u| u.owner == org));
                        }
                    }
                }
            }
        }
        Ok(Some(out))
    }

    /// A user's entry, with `memberOf` only for groups that exist (as the groups' `member` lists only
    /// existing users).
    fn user_entry(&self, u: &User, rest: &str, operational: bool) -> Result<Entry, DirectoryError> {
        let mut kept = Vec::with_capacity(u.groups.len());
        for (owner, name) in groups_of(u) {
            let key = (owner.to_string(), name.to_string());
            if self.groups.get(&self.store, &key, || Ok::<_, RaftError>(self.store.group(owner, name)?.is_some()))? {
                kept.push((owner, name));
            }
        }
        Ok(user_entry_in(u, kept, rest, operational))
    }

    /// The users of `org` whose name is `name` ignoring case, from the index.
    fn named(&self, org: &str, name: &str) -> Result<Arc<[Arc<User>]>, DirectoryError> {
        let key = (org.to_string(), name.to_lowercase());
        self.named
            .get(&self.store, &key, || Ok::<_, DirectoryError>(decoded(&self.store.users_named_ci(org, name)?)?.into()))
    }

    /// A user of `org` by name: exactly, else ignoring case (when that names one user).
    fn find_user(&self, org: &str, name: &str) -> Result<Option<User>, DirectoryError> {
        if let Some(u) = self.store.user(org, name)? {
            return Ok(Some(u.to_owned()?));
        }
        Ok(match &*self.named(org, name)? {
            [one] => Some(User::clone(one)),
            _ => None,
        })
    }

    /// A group of `org` by name: exactly, else ignoring case.
    fn find_group(&self, org: &str, name: &str) -> Result<Option<Group>, DirectoryError> {
        if let Some(g) = self.store.group(org, name)? {
            return Ok(Some(g.to_owned()?));
        }
        for g in self.store.groups(org) {
            let g = g?;
            if g.get().name.eq_ignore_ascii_case(name) {
                return Ok(Some(g.to_owned()?));
            }
        }
        Ok(None)
    }

    fn members(&self, g: &Group) -> Result<Vec<User>, DirectoryError> {
        let recs = self.store.group_members(&g.owner, &g.name)?;
        let mut out: Vec<User> = recs.iter().map(|r| r.to_owned()).collect::<Result<_, _>>()?;
        out.sort_by(|a, b| (&a.owner, &a.name).cmp(&(&b.owner, &b.name)));
        Ok(out)
    }

    /// The entry at `dn` if `viewer` may see it (for Compare).
    pub fn entry(&self, viewer: &Viewer, dn: &str) -> Result<Entry, DirectoryError> {
        let filter = Filter::Present("objectClass".into());
        let s = Search {
            base: dn,
            scope: Scope::Base,
            filter: &filter,
            size_limit: 1,
            time_limit: None,
            after: None,
            operational: true,
        };
        let mut found = self.search(viewer, &s)?;
        found.entries.pop().ok_or(DirectoryError::NoSuchObject)
    }
}

/// Index answers, decoded.
fn decoded(recs: &[Record<User>]) -> Result<Vec<Arc<User>>, RaftError> {
    recs.iter().map(|r| r.to_owned().map(Arc::new)).collect()
}

fn dn_eq(a: &[Rdn], b: &[Rdn]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.key == y.key && fold(&x.value) == fold(&y.value))
}

/// A group named by a `memberOf` assertion: (`org`, `name`) from `cn=<name>,ou=<org>` or `org/name`.
fn group_of_key(assertion: &str) -> Option<(String, String)> {
    if let Some(rdns) = parse_dn(assertion) {
        if let [cn, ou, ..] = rdns.as_slice() {
            if cn.key == "cn" && ou.key == "ou" {
                return Some((ou.value.clone(), cn.value.clone()));
            }
        }
    }
    let (org, name) = assertion.split_once('/')?;
    Some((org.to_string(), name.to_string()))
}

/// One index lookup that finds every user an equality term can match.
#[derive(Debug, Clone, PartialEq)]
enum Lookup {
    Name(String),
    Mail(String),
    Id(String),
    MemberOf(String),
}

/// Which kinds of entries a filter can match and, for users, the index lookups that find all candidates.
struct Plan {
    groups: bool,
    users: bool,
    /// `None`: no index covers the filter; scan.
    lookups: Option<Vec<Lookup>>,
}

fn plan(f: &Filter) -> Plan {
    Plan { groups: may_match_kind(f, "posixgroup"), users: may_match_kind(f, "posixaccount"), lookups: lookups(f) }
}

/// Whether the filter can match an entry of the given object class, judging by its `objectClass` equality
/// terms under AND (the rest is left to the filter itself).
fn may_match_kind(f: &Filter, class: &str) -> bool {
    let (user_classes, group_classes) = (
        ["top", "person", "organizationalperson", "inetorgperson", "posixaccount"],
        ["top", "posixgroup", "groupofnames"],
    );
    let classes: &[&str] = if class == "posixaccount" { &user_classes } else { &group_classes };
    match f {
        Filter::Equal(a, v) if a.eq_ignore_ascii_case("objectClass") => classes.contains(&fold(v).as_str()),
        Filter::And(fs) => fs.iter().all(|f| may_match_kind(f, class)),
        Filter::Or(fs) => fs.iter().any(|f| may_match_kind(f, class)),
        _ => true,
    }
}

/// The index lookups that cover every user `f` can match, if there are such.
fn lookups(f: &Filter) -> Option<Vec<Lookup>> {
    match f {
        Filter::Equal(a, v) => match canonical(a)? {
            "uid" | "cn" => Some(vec![Lookup::Name(v.trim().to_string())]),
            "mail" => Some(vec![Lookup::Mail(v.trim().to_string())]),
            "entryUUID" => Some(vec![Lookup::Id(v.trim().to_string())]),
            "memberOf" => Some(vec![Lookup::MemberOf(v.trim().to_string())]),
            _ => None,
        },
        // One covered term is enough: the others only narrow it down.
        Filter::And(fs) => fs.iter().find_map(lookups),
        // Every alternative must be covered.
        Filter::Or(fs) if !fs.is_empty() => {
            let mut all = Vec::new();
            for f in fs {
                all.extend(lookups(f)?);
            }
            Some(all)
        }
        _ => None,
    }
}

/// A search in progress: counts, limits, and where the page starts.
struct Run<'a> {
    s: &'a Search<'a>,
    /// Build operational attributes.
    op: bool,
    started: Instant,
    found: Found,
    checked: u64,
}

impl Run<'_> {
    /// Considers the entry at `pos` (built only when it is past the page start): adds it if the filter
    /// matches. Returns false once the size limit is reached (with `truncated` set).
    fn offer(
        &mut self,
        pos: Position,
        build: impl FnOnce() -> Result<Entry, DirectoryError>,
    ) -> Result<bool, DirectoryError> {
        if self.s.after.as_ref().is_some_and(|a| &pos <= a) {
            return Ok(true);
        }
        self.checked += 1;
        if self.checked.is_multiple_of(256) {
            if let Some(limit) = self.s.time_limit {
                if self.started.elapsed() > limit {
                    return Err(DirectoryError::TimeLimit);
                }
            }
        }
        let entry = build()?;
        if !self.s.filter.matches(&entry) {
            return Ok(true);
        }
        if self.s.size_limit > 0 && self.found.entries.len() >= self.s.size_limit {
            self.found.truncated = true;
            return Ok(false);
        }
        self.found.entries.push(entry);
        self.found.next = Some(pos);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            owner: "acme".into(),
            name: name.into(),
            id: format!("id-{name}"),
            email: format!("{name}@acme.example"),
            display_name: format!("{name} Example"),
            groups: vec!["acme/sales".into()],
            created_time: "2024-01-02T03:04:05Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn fnv_matches_casdoor_examples() {
        assert_eq!(fnv1a32("alice"), 2267157479);
        assert_eq!(fnv1a32("admin"), 885536276);
        assert_eq!(fnv1a32("sales"), 2258376375);
    }

    #[test]
    fn dns_parse_with_escapes_and_spaces() {
        let d = parse_dn("CN = a\\,b , ou=acme,dc=example,dc=com").unwrap();
        assert_eq!(d[0], Rdn { key: "cn".into(), value: "a,b".into() });
        assert_eq!(d[1].value, "acme");
        assert_eq!(d.len(), 4);
        assert_eq!(parse_dn("cn=\\41\\42").unwrap()[0].value, "AB");
        assert!(parse_dn("nonsense").is_none());
        assert!(parse_dn("cn=a\\").is_none());
        assert_eq!(parse_dn("").unwrap(), vec![]);
        let name = "a,b+c \"d\"";
        assert_eq!(parse_dn(&user_dn("acme", name, "")).unwrap()[0].value, name);
    }

    #[test]
    fn only_spaces_around_a_value_are_dropped_and_escaped_ones_are_kept() {
        // Found by fuzzing: an escaped form feed at the end was trimmed on the way back.
        assert_eq!(parse_dn("uid=a\\,b\\0C,ou=acme").unwrap()[0].value, "a,b\u{c}");
        for value in ["a,b\u{c}", " lead", "trail ", "\u{c}x", "  "] {
            let again = format!("cn={}", escape_dn_value(value));
            assert_eq!(parse_dn(&again).unwrap()[0].value, value, "{again:?}");
        }
        assert_eq!(parse_dn("cn=  a b  ,ou=x").unwrap()[0].value, "a b");
    }

    #[test]
    fn user_entries_have_each_value_once_and_no_password() {
        let mut u = user("alice");
        u.password = "secret-hash".into();
        u.groups = vec!["acme/sales".into(), "acme/sales".into()];
        let e = user_entry(&u, "dc=example,dc=com", true);
        assert_eq!(e.dn, "uid=alice,ou=acme,dc=example,dc=com");
        for a in e.attributes.iter().chain(&e.operational) {
            let mut v = a.values.clone();
            v.dedup();
            assert_eq!(v.len(), a.values.len(), "{}", a.name);
            assert!(!a.values.iter().any(|v| v.contains("secret-hash")));
        }
        assert_eq!(e.get("uid").unwrap().values, vec!["alice"]);
        assert_eq!(e.get("entryuuid").unwrap().values, vec!["id-alice"]);
        assert_eq!(e.get("memberOf").unwrap().values, vec!["cn=sales,ou=acme,dc=example,dc=com"]);
        assert_eq!(e.get("uidNumber").unwrap().values, vec!["2267157479"]);
        assert_eq!(e.get("createTimestamp").unwrap().values, vec!["20240102030405Z"]);
        assert!(e.get("userPassword").is_none());
    }

    #[test]
    fn filters_evaluate_every_kind() {
        let e = user_entry(&user("alice"), "", true);
        let eq = |a: &str, v: &str| Filter::Equal(a.into(), v.into());
        assert!(eq("UID", "ALICE").matches(&e));
        assert!(eq("email", "alice@acme.example").matches(&e));
        assert!(eq("memberOf", "cn=Sales,ou=acme,dc=other").matches(&e));
        assert!(eq("memberOf", "acme/sales").matches(&e));
        assert!(!eq("memberOf", "cn=support,ou=acme").matches(&e));
        assert!(eq("objectClass", "posixAccount").matches(&e));
        assert!(Filter::Present("mail".into()).matches(&e));
        assert!(!Filter::Present("mobile".into()).matches(&e));
        assert!(!Filter::Present("userPassword".into()).matches(&e));
        let sub = Filter::Substrings {
            attribute: "cn".into(),
            initial: Some("al".into()),
            any: vec!["i".into()],
            last: Some("e".into()),
        };
        assert!(sub.matches(&e));
        let sub = Filter::Substrings { attribute: "cn".into(), initial: None, any: vec!["z".into()], last: None };
        assert!(!sub.matches(&e));
        assert!(Filter::GreaterOrEqual("uidNumber".into(), "1000".into()).matches(&e));
        assert!(!Filter::LessOrEqual("uidNumber".into(), "1000".into()).matches(&e));
        assert!(Filter::GreaterOrEqual("uidNumber".into(), "999999999".into()).matches(&e), "integers, not text");
        assert!(Filter::Approx("displayName".into(), "alice-example".into()).matches(&e));
        // Unknown attributes are Undefined: NOT does not turn them True.
        assert!(!eq("noSuchAttribute", "x").matches(&e));
        assert!(!Filter::Not(Box::new(eq("noSuchAttribute", "x"))).matches(&e));
        assert!(Filter::Not(Box::new(eq("uid", "bob"))).matches(&e));
        assert!(Filter::Or(vec![eq("noSuchAttribute", "x"), eq("uid", "alice")]).matches(&e));
        assert!(!Filter::And(vec![eq("uid", "alice"), eq("uid", "bob")]).matches(&e));
        assert!(!Filter::Undefined.matches(&e));
    }

    #[test]
    fn plans_use_indexes_for_equality() {
        let eq = |a: &str, v: &str| Filter::Equal(a.into(), v.into());
        assert_eq!(lookups(&eq("uid", "a")), Some(vec![Lookup::Name("a".into())]));
        let and = Filter::And(vec![eq("objectClass", "person"), eq("mail", "a@x")]);
        assert_eq!(lookups(&and), Some(vec![Lookup::Mail("a@x".into())]));
        assert_eq!(lookups(&Filter::Or(vec![eq("uid", "a"), eq("sn", "b")])), None);
        assert_eq!(lookups(&Filter::Present("uid".into())), None);
        assert!(!plan(&Filter::And(vec![eq("objectClass", "posixGroup"), eq("cn", "x")])).users);
        assert!(!plan(&eq("objectClass", "inetOrgPerson")).groups);
    }

    #[test]
    fn positions_round_trip() {
        let p = Position { org: "acme".into(), phase: 2, name: "al\0ice".into() };
        assert_eq!(Position::decode(&p.encode()).as_ref(), Some(&p));
        assert_eq!(Position::decode(b"x"), None);
    }
}
