//! The LDAP directory against a running node holding the Casdoor fixtures (COMPAT §10, imported from
//! PostgreSQL as in tests/e2e/import.rs), driven with OpenLDAP's own clients (`ldapsearch`, `ldapwhoami`,
//! `ldapcompare` from Debian's ldap-utils, run as processes) and with the `ldap3` crate where those cannot
//! go (paging cookies, result codes and messages of one connection, several operations on one bind).
//! Malformed and oversized messages are written on raw TCP connections.
//!
//! Needs ldap-utils (tests/e2e/ldap/install.sh) and PostgreSQL (as tests/e2e/import.rs).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use ldap3::controls::{ControlType, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapResult, Scope, SearchEntry, SearchOptions, SearchResult};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{free_port, Node, ADMIN_PASSWORD};

/// The global administrator's bind DN (Casdoor's form): the node's own built-in/admin, which the import
/// keeps, so its password is the test one.
const ADMIN_DN: &str = "cn=admin,ou=built-in";
/// What every failed bind says, whatever failed (README "LDAP").
const INVALID: &str = "invalid credentials";
/// The base most searches use: Casdoor clients put `dc=` parts after the organization, echoed in DNs.
const ACME: &str = "ou=acme,dc=example,dc=com";

/// Users of the fixtures' acme organization (COMPAT §10.2).
const ACME_USERS: [&str; 20] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia",
    "peggy", "trent", "sybil", "victor", "walter", "sam", "xavier",
];
const ACME_GROUPS: [&str; 3] = ["engineering", "platform", "sales"];
const GLOBEX_USERS: [&str; 8] = ["kenji", "yuki", "li", "noor", "zoe", "hans", "svc-reporting", "amara"];
const GLOBEX_GROUPS: [&str; 2] = ["design", "tokyo-office"];

/// A node with the Casdoor fixtures imported and an LDAP listener (and LDAPS when asked for).
struct Directory {
    node: Node,
    /// `ldap://127.0.0.1:<port>`
    ldap: String,
    /// `ldaps://127.0.0.1:<port>`, or empty.
    ldaps: String,
    _tmp: tempfile::TempDir,
}

impl Directory {
    /// Starts a node whose config file has `ldap_config` in its `[ldap]` section, imports the fixtures.
    async fn start(tag: &str, ldap_config: &str, with_ldaps: bool) -> Directory {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = tmp.path().join("jeton.toml");
        std::fs::write(&config, format!("[ldap]\n{ldap_config}\n")).expect("config file");
        let ldap_addr = format!("127.0.0.1:{}", free_port());
        let ldaps_addr = format!("127.0.0.1:{}", free_port());
        let config = config.to_string_lossy().into_owned();
        let mut args = vec!["--config", &config, "--ldap-addr", &ldap_addr];
        if with_ldaps {
            args.extend(["--ldaps-addr", &ldaps_addr]);
        }
        let node = Node::start_in(&tmp.path().join("data"), free_port(), &args).await;
        crate::import::import_fixtures_into(&node, &format!("ldap_{tag}"));
        let ldaps = if with_ldaps { format!("ldaps://{ldaps_addr}") } else { String::new() };
        Directory { node, ldap: format!("ldap://{ldap_addr}"), ldaps, _tmp: tmp }
    }

    /// The node's self-signed certificate (LDAPS and StartTLS), once it has written it.
    fn cert(&self) -> PathBuf {
        let path = self.node.dir.join("tls-cert.pem");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(Instant::now() < deadline, "no {} written; output: {}", path.display(), self.node.output());
            std::thread::sleep(Duration::from_millis(50));
        }
        path
    }

    /// Runs an ldap-utils tool against this node, trusting its certificate for TLS.
    fn tool(&self, tool: &str, args: &[&str]) -> Tool {
        let out = Command::new(tool)
            .args(args)
            .env("LDAPTLS_CACERT", self.cert())
            .env("LDAPTLS_REQCERT", "demand")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool} (tests/e2e/ldap/install.sh installs it): {e}"));
        Tool {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `ldapwhoami` bound as `dn` (simple bind; anonymous when `dn` is empty).
    fn whoami(&self, dn: &str, password: &str) -> Tool {
        let mut args = vec!["-x", "-H", &self.ldap];
        if !dn.is_empty() {
            args.extend(["-D", dn, "-w", password]);
        }
        self.tool("ldapwhoami", &args)
    }

    /// `ldapsearch` bound as `dn` (anonymous when empty) on the plain listener: the entries it printed, and
    /// its exit status (the search's result code).
    fn search(&self, dn: &str, password: &str, base: &str, scope: &str, filter: &str, attrs: &[&str]) -> Searched {
        self.search_with(dn, password, &["-b", base, "-s", scope], filter, attrs)
    }

    /// [`Directory::search`] with any further `ldapsearch` options.
    fn search_with(&self, dn: &str, password: &str, options: &[&str], filter: &str, attrs: &[&str]) -> Searched {
        let mut args = vec!["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &self.ldap];
        if !dn.is_empty() {
            args.extend(["-D", dn, "-w", password]);
        }
        args.extend(options);
        args.push(filter);
        args.extend(attrs);
        let t = self.tool("ldapsearch", &args);
        Searched { entries: parse_ldif(&t.stdout), code: t.code, stderr: t.stderr, stdout: t.stdout }
    }

    /// The DNs an `ldapsearch` as the global administrator finds.
    fn admin_dns(&self, base: &str, scope: &str, filter: &str) -> BTreeSet<String> {
        let s = self.search(ADMIN_DN, ADMIN_PASSWORD, base, scope, filter, &["1.1"]);
        assert_eq!(s.code, 0, "{filter} under {base}: {}", s.stderr);
        s.dns()
    }

    /// An `ldap3` connection to the plain listener.
    async fn connect(&self) -> Ldap {
        connect(&self.ldap, LdapConnSettings::new()).await
    }

    /// An `ldap3` connection bound as `dn`; the bind must succeed.
    async fn bound(&self, dn: &str, password: &str) -> Ldap {
        let mut ldap = self.connect().await;
        let r = ldap.simple_bind(dn, password).await.expect("bind");
        assert_eq!(r.rc, 0, "bind as {dn}: {r:?}");
        ldap
    }
}

/// Connects `ldap3` to `url` and drives the connection in the background.
async fn connect(url: &str, settings: LdapConnSettings) -> Ldap {
    let (conn, ldap) = LdapConnAsync::with_settings(settings.set_conn_timeout(Duration::from_secs(10)), url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.drive().await;
    });
    ldap
}

/// What an ldap-utils tool did.
#[derive(Debug)]
struct Tool {
    code: i32,
    stdout: String,
    stderr: String,
}

/// One entry of `ldapsearch` output: its DN and its (attribute, value) lines, in order.
#[derive(Debug, Clone, PartialEq)]
struct LdifEntry {
    dn: String,
    lines: Vec<(String, String)>,
}

impl LdifEntry {
    /// The values of `attr` (case-insensitive name).
    fn values(&self, attr: &str) -> Vec<&str> {
        self.lines.iter().filter(|(a, _)| a.eq_ignore_ascii_case(attr)).map(|(_, v)| v.as_str()).collect()
    }
    fn value_set(&self, attr: &str) -> BTreeSet<String> {
        self.values(attr).into_iter().map(str::to_string).collect()
    }
    /// The attribute names, as the server spelled them.
    fn names(&self) -> BTreeSet<String> {
        self.lines.iter().map(|(a, _)| a.clone()).collect()
    }
}

/// An `ldapsearch` run.
#[derive(Debug)]
struct Searched {
    entries: Vec<LdifEntry>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Searched {
    fn dns(&self) -> BTreeSet<String> {
        self.entries.iter().map(|e| e.dn.clone()).collect()
    }
    fn entry(&self, dn: &str) -> &LdifEntry {
        self.entries
            .iter()
            .find(|e| e.dn.eq_ignore_ascii_case(dn))
            .unwrap_or_else(|| panic!("no entry {dn} in {:?}", self.dns()))
    }
}

/// Parses `ldapsearch -LLL -o ldif-wrap=no` output (`attr: value`, or `attr:: base64` for values that
/// are not plain ASCII).
fn parse_ldif(text: &str) -> Vec<LdifEntry> {
    let mut out = Vec::new();
    let mut current: Option<LdifEntry> = None;
    for line in text.lines() {
        if line.is_empty() {
            if let Some(e) = current.take() {
                out.push(e);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, rest)) => match rest.strip_prefix(':') {
                Some(b64) => {
                    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).expect("base64 in LDIF");
                    (n, String::from_utf8(raw).expect("UTF-8 value"))
                }
                None => (n, rest.strip_prefix(' ').unwrap_or(rest).to_string()),
            },
            None => (line, String::new()),
        };
        if name == "dn" {
            if let Some(e) = current.take() {
                out.push(e);
            }
            current = Some(LdifEntry { dn: value, lines: Vec::new() });
        } else if let Some(e) = current.as_mut() {
            e.lines.push((name.to_string(), value));
        }
    }
    out.extend(current);
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// User DNs under `ou=<org>,<rest>`.
fn users(org: &str, rest: &str, names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| format!("uid={n},{}", org_dn(org, rest))).collect()
}

fn groups(org: &str, rest: &str, names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| format!("cn={n},{}", org_dn(org, rest))).collect()
}

fn org_dn(org: &str, rest: &str) -> String {
    if rest.is_empty() {
        format!("ou={org}")
    } else {
        format!("ou={org},{rest}")
    }
}

/// acme users under the usual base.
fn acme_users(names: &[&str]) -> BTreeSet<String> {
    users("acme", "dc=example,dc=com", names)
}

/// Every entry of acme under the usual base: the organization, its groups and its users.
fn all_of_acme() -> BTreeSet<String> {
    let mut all = acme_users(&ACME_USERS);
    all.extend(groups("acme", "dc=example,dc=com", &ACME_GROUPS));
    all.insert(ACME.to_string());
    all
}

fn seed_users() -> Vec<Value> {
    crate::import::seed_passwords()["users"].as_array().expect("users").clone()
}

/// The value of one sample in the node's /metrics.
async fn metric(node: &Node, sample: &str) -> f64 {
    let text = node.http.get(node.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no sample {sample} in /metrics:\n{text}"))
}

/// An `ldap3` search: the entries and the result.
async fn find(
    ldap: &mut Ldap,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> (Vec<SearchEntry>, LdapResult) {
    let SearchResult(entries, r) = ldap.search(base, scope, filter, attrs.to_vec()).await.expect("search");
    (entries.into_iter().map(SearchEntry::construct).collect(), r)
}

/// [`find`] under acme with the Simple Paged Results control: `size` entries after `cookie`, no attributes.
async fn paged(ldap: &mut Ldap, size: i32, cookie: &[u8], filter: &str) -> (Vec<SearchEntry>, LdapResult) {
    ldap.with_controls(PagedResults { size, cookie: cookie.to_vec() });
    find(ldap, ACME, Scope::Subtree, filter, &["1.1"]).await
}

/// The rc and diagnostic message of a result, for comparing answers.
fn answer(r: &LdapResult) -> (u32, String, String) {
    (r.rc, r.text.clone(), r.matched.clone())
}

/// Every fixture user with a password binds in Casdoor's `cn=<login>,ou=<org>` form, whatever scheme the
/// password is stored in (all eight); the other DN forms bind too; and every kind of failure — wrong
/// password, unknown user or organization, forbidden, deleted, password-less users — answers exactly the
/// same. SASL, unauthenticated and unparseable binds get their own codes, and a failed bind leaves the
/// connection anonymous.
#[tokio::test]
async fn binds_check_every_password_scheme_and_every_failure_answers_alike() {
    let d = Directory::start("binds", "", false).await;
    let mut schemes = BTreeSet::new();
    let mut ok_binds = 0;
    for u in seed_users() {
        let f = |k: &str| u[k].as_str().unwrap_or_default().to_string();
        let (owner, name, password) = (f("owner"), f("name"), f("password"));
        if f("status") != "ok" || (owner.as_str(), name.as_str()) == ("built-in", "admin") {
            continue;
        }
        let t = d.whoami(&format!("cn={name},ou={owner}"), &password);
        assert_eq!(t.code, 0, "{owner}/{name} ({}) must bind: {t:?}", f("effective_password_type"));
        assert_eq!(t.stdout.trim(), format!("dn:uid={name},ou={owner}"), "{t:?}");
        schemes.insert(f("effective_password_type"));
        ok_binds += 1;
    }
    assert_eq!(
        schemes,
        set(&["argon2id", "bcrypt", "md5-salt", "pbkdf2-django", "pbkdf2-salt", "plain", "salt", "sha512-salt"]),
        "every Casdoor password scheme is exercised"
    );

    // Other ways to name the same users: with dc= parts, as the entry DN, by email, phone or id, Casdoor's
    // entry DN, other case; and the global administrator with and without its organization.
    for (dn, password, who) in [
        ("cn=alice,ou=acme,dc=example,dc=com", "Alice#2024!", "uid=alice,ou=acme"),
        ("uid=bob,ou=acme,dc=example,dc=com", "hunter2-Bob", "uid=bob,ou=acme"),
        ("cn=bob@acme.example,ou=acme", "hunter2-Bob", "uid=bob,ou=acme"),
        ("cn=cf910212-7465-4ec8-ae27-f01c2b5c2563,ou=acme", "hunter2-Bob", "uid=bob,ou=acme"),
        ("uid=cf910212-7465-4ec8-ae27-f01c2b5c2563,cn=bob,ou=acme,dc=example,dc=com", "hunter2-Bob", "uid=bob,ou=acme"),
        ("CN=Bob, OU=acme", "hunter2-Bob", "uid=bob,ou=acme"),
        ("cn=kenji,ou=globex,dc=globex,dc=jp", "Kenji-Yamada-42", "uid=kenji,ou=globex"),
        (ADMIN_DN, ADMIN_PASSWORD, "uid=admin,ou=built-in"),
        ("cn=admin", ADMIN_PASSWORD, "uid=admin,ou=built-in"),
        ("uid=admin,ou=built-in,dc=example,dc=com", ADMIN_PASSWORD, "uid=admin,ou=built-in"),
    ] {
        let t = d.whoami(dn, password);
        assert_eq!((t.code, t.stdout.trim()), (0, format!("dn:{who}").as_str()), "bind as {dn}: {t:?}");
        ok_binds += 1;
    }

    // Every failure: the same result code and the same message, from ldapwhoami's point of view and from
    // the protocol's.
    let failures = [
        ("cn=alice,ou=acme", "Alice#2024"),          // wrong password
        ("cn=nobody,ou=acme", "Alice#2024!"),        // unknown user
        ("cn=alice,ou=nowhere", "Alice#2024!"),      // unknown organization
        ("uid=alice,ou=globex", "Alice#2024!"),      // a user of another organization
        ("cn=judy,ou=acme", "Judy-Forbidden-1"),     // forbidden, right password
        ("cn=mallory,ou=acme", "Mallory-Deleted-1"), // deleted, right password
        ("cn=niaj,ou=acme", "anything"),             // no password (GitHub account)
        ("cn=walter,ou=acme", "anything"),           // LDAP-backed, no local password
        ("cn=admin,ou=built-in", "123"),             // Casdoor's admin password: not this node's
    ];
    let mut stderrs = BTreeSet::new();
    for (dn, password) in failures {
        let t = d.whoami(dn, password);
        assert_eq!(t.code, 49, "bind as {dn}: {t:?}");
        assert!(t.stdout.is_empty(), "{t:?}");
        stderrs.insert(t.stderr);
    }
    assert_eq!(stderrs.len(), 1, "every failed bind reads the same: {stderrs:?}");
    let mut answers = BTreeSet::new();
    let mut ldap = d.connect().await;
    for (dn, password) in failures {
        answers.insert(answer(&ldap.simple_bind(dn, password).await.expect("bind")));
    }
    assert_eq!(answers, [(49, INVALID.to_string(), String::new())].into(), "one answer for every failure");

    // SASL is not supported; a DN without a password is an unauthenticated bind, refused (RFC 4513
    // §5.1.2), not anonymous; a DN that names nobody is a syntax error; empty DN and password: anonymous.
    let r = ldap.sasl_external_bind().await.expect("sasl bind");
    assert_eq!(r.rc, 7, "SASL EXTERNAL: {r:?}");
    // (ldapwhoami -Y cannot be used: with no mechanism in the root DSE it gives up before asking; a SASL
    // PLAIN bind is sent raw in malformed_and_oversized_messages_end_only_their_connection.)
    let r = ldap.simple_bind("cn=alice,ou=acme", "").await.expect("bind");
    assert_eq!(r.rc, 53, "unauthenticated bind: {r:?}");
    for dn in ["ou=acme", "dc=example,dc=com", "not a DN"] {
        let r = ldap.simple_bind(dn, "Alice#2024!").await.expect("bind");
        assert_eq!(r.rc, 34, "bind DN {dn:?}: {r:?}");
    }
    let r = ldap.simple_bind("", "").await.expect("bind");
    assert_eq!(r.rc, 0, "anonymous bind: {r:?}");
    let t = d.whoami("", "");
    assert_eq!((t.code, t.stdout.trim()), (0, "anonymous"), "{t:?}");

    // A failed bind on a bound connection leaves it anonymous (RFC 4511 §4.2.1): it sees nothing any more.
    let r = ldap.simple_bind("cn=alice,ou=acme", "Alice#2024!").await.expect("bind");
    assert_eq!(r.rc, 0, "{r:?}");
    ok_binds += 1;
    let (found, r) = find(&mut ldap, ACME, Scope::Subtree, "(uid=bob)", &["1.1"]).await;
    assert_eq!((r.rc, found.len()), (0, 1), "alice administers acme: {r:?}");
    let r = ldap.simple_bind("cn=alice,ou=acme", "wrong").await.expect("bind");
    assert_eq!(answer(&r), (49, INVALID.to_string(), String::new()));
    let (found, r) = find(&mut ldap, ACME, Scope::Subtree, "(uid=bob)", &["1.1"]).await;
    assert_eq!((r.rc, found.len()), (0, 0), "after a failed bind the connection is anonymous: {r:?}");
    let (exop, _) = ldap.extended(ldap3::exop::WhoAmI).await.expect("whoami").success().expect("whoami ok");
    assert_eq!(exop.val.unwrap_or_default(), b"", "who am I after a failed bind: anonymous");

    // The binds are counted.
    assert_eq!(metric(&d.node, "jeton_ldap_binds_total{result=\"ok\"}").await, ok_binds as f64);
    assert!(metric(&d.node, "jeton_ldap_binds_total{result=\"failed\"}").await >= (2 * failures.len()) as f64);
    assert!(metric(&d.node, "jeton_ldap_binds_total{result=\"anonymous\"}").await >= 1.0);
}

/// Casdoor's bind DN names the user by any login string (COMPAT §4.1, §8.1; README "LDAP": "login = name,
/// email, phone or user id"): the phone number too.
#[tokio::test]
async fn a_bind_dn_may_name_the_user_by_phone() {
    let d = Directory::start("phone", "", false).await;
    let t = d.whoami("cn=4155550101,ou=acme", "Alice#2024!");
    assert_eq!((t.code, t.stdout.trim()), (0, "dn:uid=alice,ou=acme"), "{t:?}");
}

/// Each filter kind, evaluated on every entry of acme by the global administrator, selects exactly the
/// entries the fixtures say; scopes base, one and sub; the filter is applied to a single-entry search too.
#[tokio::test]
async fn filters_of_every_kind_select_the_expected_entries() {
    let d = Directory::start("filters", "", false).await;
    let people = |names: &[&str]| acme_users(names);
    let grp = |names: &[&str]| groups("acme", "dc=example,dc=com", names);
    let both = |u: &[&str], g: &[&str]| people(u).union(&grp(g)).cloned().collect::<BTreeSet<_>>();
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        // Equality, case-insensitive; indexed (uid, cn, mail) and not (sn).
        ("(uid=bob)", people(&["bob"])),
        ("(cn=BOB)", people(&["bob"])),
        ("(mail=Carol@ACME.example)", people(&["carol"])),
        ("(email=carol@acme.example)", people(&["carol"])),
        ("(sn=Smith)", people(&["bob"])),
        ("(homeDirectory=/home/erin)", people(&["erin"])),
        ("(entryUUID=cf910212-7465-4ec8-ae27-f01c2b5c2563)", people(&["bob"])),
        ("(uid=nobody)", people(&[])),
        ("(objectClass=posixGroup)", grp(&ACME_GROUPS)),
        ("(objectClass=organizationalUnit)", set(&[ACME])),
        ("(objectClass=inetOrgPerson)", people(&ACME_USERS)),
        // Presence.
        ("(mobile=*)", people(&["alice", "sam"])),
        ("(givenName=*)", people(&["alice", "bob", "olivia"])),
        ("(memberUid=*)", grp(&ACME_GROUPS)),
        ("(objectClass=*)", all_of_acme()),
        // Substrings: initial, any, final, and all three.
        ("(uid=s*)", people(&["sam", "sybil"])),
        ("(cn=*a*e*)", both(&["alice", "dave", "grace", "walter", "xavier"], &["sales"])),
        ("(cn=*a*e)", people(&["alice", "dave", "grace"])),
        ("(mail=*@contractor.example)", people(&["xavier"])),
        ("(mail=a*@*.EXAMPLE)", people(&["alice"])),
        ("(displayName=*mith)", people(&["bob"])),
        // Ordering, on integers for uidNumber/gidNumber (as text, 5003 > 10002 and 5003 >= 4000000000).
        ("(uidNumber<=10002)", people(&["alice", "bob", "walter"])),
        ("(uidNumber>=4000000000)", people(&["frank", "niaj"])),
        ("(&(uidNumber>=10001)(uidNumber<=10002))", people(&["alice", "bob"])),
        ("(gidNumber<=20001)", both(&["alice", "bob", "walter"], &["engineering"])),
        ("(&(objectClass=posixGroup)(gidNumber>=20002))", grp(&["platform", "sales"])),
        // Approximate.
        ("(displayName~=bob smith)", people(&["bob"])),
        ("(sn~=SMITH)", people(&["bob"])),
        // and / or / not.
        (
            "(&(objectClass=posixAccount)(|(uid=alice)(uid=bob)(mail=erin@acme.example)))",
            people(&["alice", "bob", "erin"]),
        ),
        ("(&(|(uid=alice)(uid=bob)(uid=carol))(!(uid=bob)))", people(&["alice", "carol"])),
        ("(!(objectClass=posixAccount))", grp(&ACME_GROUPS).union(&set(&[ACME])).cloned().collect()),
        ("(|(uid=heidi)(cn=sales))", both(&["heidi"], &["sales"])),
        // Unknown attributes are Undefined (RFC 4511 §4.5.1.7): neither they nor their negation match.
        ("(foo=bar)", people(&[])),
        ("(!(foo=bar))", people(&[])),
        ("(|(foo=bar)(uid=bob))", people(&["bob"])),
        ("(userPassword=*)", people(&[])),
        ("(userPassword=hunter2-Bob)", people(&[])),
        // Extensible matches are not supported: no match.
        ("(uid:caseExactMatch:=bob)", people(&[])),
        // Membership.
        ("(memberOf=cn=engineering,ou=acme,dc=example,dc=com)", people(&["bob", "carol", "walter"])),
        ("(memberOf=CN=Engineering,OU=acme)", people(&["bob", "carol", "walter"])),
        ("(memberOf=acme/platform)", people(&["bob"])),
        ("(&(objectClass=posixGroup)(memberUid=bob))", grp(&["engineering", "platform"])),
        ("(member=uid=carol,ou=acme)", grp(&["engineering"])),
    ];
    let mut wrong = Vec::new();
    for (filter, want) in &cases {
        let got = d.admin_dns(ACME, "sub", filter);
        if &got != want {
            wrong.push(format!("{filter}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "filters that selected the wrong entries:\n{}", wrong.join("\n"));

    // Scopes: base is the organization entry only, one level its groups and users, subtree all of them.
    assert_eq!(d.admin_dns(ACME, "base", "(objectClass=*)"), set(&[ACME]));
    let mut children = all_of_acme();
    children.remove(ACME);
    assert_eq!(d.admin_dns(ACME, "one", "(objectClass=*)"), children);
    assert_eq!(d.admin_dns(ACME, "sub", "(objectClass=*)"), all_of_acme());
    // A base naming one user: the filter still decides (Casdoor ignored it, COMPAT §11.10).
    let bob = "uid=bob,ou=acme,dc=example,dc=com";
    assert_eq!(d.admin_dns(bob, "base", "(uid=alice)"), set(&[]));
    assert_eq!(d.admin_dns(bob, "base", "(mail=alice@acme.example)"), set(&[]));
    assert_eq!(d.admin_dns(bob, "base", "(&(uid=bob)(uidNumber=10002))"), set(&[bob]));
    assert_eq!(d.admin_dns(bob, "one", "(objectClass=*)"), set(&[]), "a user has no children");
    // Casdoor's `cn=<name>,ou=<org>` base finds the user as well, and a group by its DN.
    assert_eq!(d.admin_dns("cn=bob,ou=acme,dc=example,dc=com", "base", "(objectClass=*)"), set(&[bob]));
    assert_eq!(
        d.admin_dns("cn=sales,ou=acme,dc=example,dc=com", "base", "(objectClass=*)"),
        set(&["cn=sales,ou=acme,dc=example,dc=com"])
    );
    // Another organization, under another suffix (echoed as given).
    assert_eq!(
        d.admin_dns("ou=globex,dc=globex,dc=jp", "sub", "(|(uid=kenji)(objectClass=posixGroup))"),
        users("globex", "dc=globex,dc=jp", &["kenji"])
            .union(&groups("globex", "dc=globex,dc=jp", &GLOBEX_GROUPS))
            .cloned()
            .collect()
    );
    // An unknown organization, or an entry that does not exist: noSuchObject.
    for base in ["ou=nowhere,dc=example,dc=com", "uid=nobody,ou=acme,dc=example,dc=com", "cn=nothing,ou=acme"] {
        let s = d.search(ADMIN_DN, ADMIN_PASSWORD, base, "sub", "(objectClass=*)", &["1.1"]);
        assert_eq!((s.code, s.entries.len()), (32, 0), "{base}: {s:?}");
    }
    assert!(metric(&d.node, "jeton_ldap_searches_total").await >= cases.len() as f64);
    assert!(metric(&d.node, "jeton_ldap_entries_total").await >= 24.0);
}

/// Equality is case-insensitive whether an index answers it or every entry is read: the same filter term
/// selects the same entries alone (indexed: uid, cn, mail, memberOf, entryUUID) and OR-ed with a term no
/// index covers (which makes the directory read every user).
#[tokio::test]
async fn indexed_and_scanned_equality_select_the_same_entries() {
    let d = Directory::start("indexes", "", false).await;
    let cases: [(&str, BTreeSet<String>); 7] = [
        ("uid=BOB", acme_users(&["bob"])),
        ("cn=Bob", acme_users(&["bob"])),
        ("mail=BOB@ACME.EXAMPLE", acme_users(&["bob"])),
        ("entryUUID=CF910212-7465-4EC8-AE27-F01C2B5C2563", acme_users(&["bob"])),
        ("memberOf=CN=Engineering,OU=ACME", acme_users(&["bob", "carol", "walter"])),
        ("memberOf=cn=engineering,ou=ACME,dc=example,dc=com", acme_users(&["bob", "carol", "walter"])),
        ("memberOf=ACME/Engineering", acme_users(&["bob", "carol", "walter"])),
    ];
    let mut wrong = Vec::new();
    for (term, want) in &cases {
        for filter in [format!("({term})"), format!("(|({term})(sn=no-such-surname))")] {
            let got = d.admin_dns(ACME, "sub", &filter);
            if &got != want {
                wrong.push(format!("{filter}: expected {want:?}, got {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Search bases name their organization in any case (README "LDAP": unlike Casdoor, DNs are compared
/// case-insensitively).
#[tokio::test]
async fn search_bases_name_the_organization_in_any_case() {
    let d = Directory::start("base_case", "", false).await;
    for base in ["OU=ACME,DC=Example,DC=com", "ou=Acme", "uid=bob,ou=ACME", "cn=engineering,OU=Acme"] {
        let s = d.search(ADMIN_DN, ADMIN_PASSWORD, base, "sub", "(|(uid=bob)(cn=engineering))", &["1.1"]);
        assert_eq!(s.code, 0, "{base}: {s:?}");
        assert!(!s.entries.is_empty(), "{base}: {s:?}");
    }
}

/// Which attributes come back: all user attributes by default and for `*`, operational ones for `+`, named
/// ones by any of their names; never userPassword, never an unknown attribute (not even empty), never a
/// value twice; `1.1` and typesOnly.
#[tokio::test]
async fn attributes_are_selected_and_neither_duplicated_nor_the_password() {
    let d = Directory::start("attributes", "", false).await;
    let bob = "uid=bob,ou=acme,dc=example,dc=com";
    let read = |attrs: &[&str]| {
        let s = d.search(ADMIN_DN, ADMIN_PASSWORD, bob, "base", "(objectClass=*)", attrs);
        assert_eq!((s.code, s.entries.len()), (0, 1), "{attrs:?}: {s:?}");
        s.entries[0].clone()
    };
    let user_attrs = set(&[
        "objectClass",
        "uid",
        "cn",
        "sn",
        "givenName",
        "displayName",
        "mail",
        "uidNumber",
        "gidNumber",
        "homeDirectory",
        "loginShell",
        "gecos",
        "memberOf",
    ]);
    let operational = set(&[
        "entryUUID",
        "entryDN",
        "createTimestamp",
        "modifyTimestamp",
        "structuralObjectClass",
        "subschemaSubentry",
        "hasSubordinates",
    ]);
    let e = read(&[]);
    assert_eq!(e.names(), user_attrs, "no attributes asked for: the user attributes; bob has no mobile");
    let expect = [
        ("uid", "bob"),
        ("cn", "bob"),
        ("sn", "Smith"),
        ("givenName", "Bob"),
        ("displayName", "Bob Smith"),
        ("mail", "bob@acme.example"),
        ("uidNumber", "10002"),
        ("gidNumber", "10002"),
        ("homeDirectory", "/home/bob"),
        ("loginShell", "/bin/bash"),
        ("gecos", "Bob Smith"),
    ];
    for (a, v) in expect {
        assert_eq!(e.values(a), [v], "{a} of bob: {e:?}");
    }
    assert_eq!(
        e.value_set("objectClass"),
        set(&["top", "person", "organizationalPerson", "inetOrgPerson", "posixAccount"])
    );
    assert_eq!(
        e.value_set("memberOf"),
        set(&["cn=engineering,ou=acme,dc=example,dc=com", "cn=platform,ou=acme,dc=example,dc=com"])
    );
    assert_eq!(read(&["*"]), e, "`*` is the default");

    let op = read(&["+"]);
    assert_eq!(op.names(), operational, "`+`: the operational attributes only");
    assert_eq!(op.values("entryUUID"), ["cf910212-7465-4ec8-ae27-f01c2b5c2563"], "the user's id");
    assert_eq!(op.values("entryDN"), [bob]);
    assert_eq!(op.values("createTimestamp"), ["20240817050000Z"], "created 2024-08-17T13:00:00+08:00");
    assert_eq!(op.values("structuralObjectClass"), ["inetOrgPerson"]);
    assert_eq!(op.values("hasSubordinates"), ["FALSE"]);
    let all = read(&["*", "+"]);
    assert_eq!(all.names(), user_attrs.union(&operational).cloned().collect());

    // Named attributes, by any name and case; unknown ones and userPassword are simply absent.
    let named = read(&["UID", "email", "entryUUID", "foo", "userPassword", "sshPublicKey"]);
    assert_eq!(named.names(), set(&["uid", "mail", "entryUUID"]), "{named:?}");
    assert_eq!(named.values("mail"), ["bob@acme.example"]);
    let nothing = read(&["foo"]);
    assert!(nothing.lines.is_empty(), "only unknown attributes asked for: none, not empty ones: {nothing:?}");
    let none = read(&["1.1"]);
    assert!(none.lines.is_empty(), "1.1: no attributes: {none:?}");
    // typesOnly: names without values.
    let s = d.search_with(ADMIN_DN, ADMIN_PASSWORD, &["-b", bob, "-s", "base", "-A"], "(objectClass=*)", &[]);
    assert_eq!(s.code, 0, "{s:?}");
    assert_eq!(s.entries[0].names(), user_attrs);
    assert!(s.entries[0].lines.iter().all(|(_, v)| v.is_empty()), "typesOnly: {s:?}");

    // Over every entry of every organization, asking for everything and for attributes twice (Casdoor
    // appended requested attributes again): no value twice, no password, nothing empty.
    for attrs in [vec!["*", "+", "userPassword"], vec!["uid", "cn", "mail", "uid", "cn", "mail", "memberOf", "member"]]
    {
        let s = d.search(ADMIN_DN, ADMIN_PASSWORD, "ou=*", "sub", "(objectClass=*)", &attrs);
        assert_eq!(s.code, 0, "{s:?}");
        assert!(s.entries.len() >= 24 + 11, "every organization: {:?}", s.dns());
        assert!(!s.stdout.to_lowercase().contains("userpassword"), "userPassword disclosed: {}", s.stdout);
        for e in &s.entries {
            let mut seen = BTreeSet::new();
            for (a, v) in &e.lines {
                assert!(seen.insert((a.to_lowercase(), v.clone())), "{}: {a}: {v} twice", e.dn);
                assert!(!v.is_empty(), "{}: {a} empty", e.dn);
            }
        }
    }
    // Alice's login shell comes from her properties; her phone is her mobile.
    let s = d.search(ADMIN_DN, ADMIN_PASSWORD, ACME, "sub", "(uid=alice)", &["loginShell", "mobile", "uidNumber"]);
    assert_eq!(s.entries[0].values("loginShell"), ["/bin/zsh"]);
    assert_eq!(s.entries[0].values("mobile"), ["4155550101"]);
    assert_eq!(s.entries[0].values("uidNumber"), ["10001"]);
    // Names in other scripts come back intact.
    let s = d.search(ADMIN_DN, ADMIN_PASSWORD, "ou=globex", "sub", "(uid=kenji)", &["displayName", "sn", "givenName"]);
    assert_eq!(s.entries[0].values("displayName"), ["山田 健二"]);
    assert_eq!(s.entries[0].values("sn"), ["山田"]);
    // A user without a uid number: Casdoor's FNV-1a of the name (COMPAT §8.3).
    let s = d.search(ADMIN_DN, ADMIN_PASSWORD, "ou=built-in", "sub", "(uid=admin)", &["uidNumber", "gidNumber"]);
    assert_eq!(s.entries[0].values("uidNumber"), ["885536276"], "{s:?}");
    assert_eq!(s.entries[0].values("gidNumber"), ["885536276"]);
}

/// Simple Paged Results (RFC 2696): pages no larger than asked (nor than the server's size limit), every
/// entry exactly once, an empty cookie at the end; a cookie only continues its own search. Without
/// paging, the smaller of the client's and the server's size limit applies, with sizeLimitExceeded.
#[tokio::test]
async fn paging_returns_every_entry_once_and_size_limits_hold() {
    let d = Directory::start("paging", "size_limit = 8", false).await;
    let mut ldap = d.bound(ADMIN_DN, ADMIN_PASSWORD).await;

    let mut seen = Vec::new();
    let mut cookie = Vec::new();
    let mut pages = 0;
    loop {
        let (entries, r) = paged(&mut ldap, 5, &cookie, "(objectClass=*)").await;
        assert_eq!(r.rc, 0, "page {pages}: {r:?}");
        assert!(entries.len() <= 5, "page {pages} has {} entries", entries.len());
        seen.extend(entries.into_iter().map(|e| e.dn));
        pages += 1;
        let ctrl = r
            .ctrls
            .iter()
            .find(|c| matches!(c.0, Some(ControlType::PagedResults)))
            .unwrap_or_else(|| panic!("no paged results control in the answer: {r:?}"));
        cookie = ctrl.1.parse::<PagedResults>().cookie;
        if cookie.is_empty() {
            break;
        }
        assert!(pages < 20, "paging does not end");
    }
    assert_eq!(pages, 5, "24 entries in pages of 5");
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an entry came twice: {seen:?}");
    assert_eq!(unique, all_of_acme(), "every entry of acme, once");

    // Users added and removed between pages move no page boundary: every other entry still comes once.
    let mut seen = Vec::new();
    let mut cookie = Vec::new();
    let mut pages = 0;
    loop {
        let (entries, r) = paged(&mut ldap, 5, &cookie, "(objectClass=*)").await;
        assert_eq!(r.rc, 0, "page {pages}: {r:?}");
        seen.extend(entries.into_iter().map(|e| e.dn));
        pages += 1;
        if pages == 2 {
            for name in ["aaron", "zed"] {
                let (s, v) = d.node.admin_post("add-user", json!({"owner": "acme", "name": name})).await;
                assert_eq!(s, 200, "{v}");
            }
            let (s, v) = d.node.admin_post("delete-user", json!({"owner": "acme", "name": "sam"})).await;
            assert_eq!(s, 200, "{v}");
        }
        let ctrl = r.ctrls.iter().find(|c| matches!(c.0, Some(ControlType::PagedResults))).expect("control");
        cookie = ctrl.1.parse::<PagedResults>().cookie;
        if cookie.is_empty() {
            break;
        }
        assert!(pages < 20, "paging does not end");
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an entry came twice while users changed: {seen:?}");
    let mut kept = all_of_acme();
    kept.remove("uid=sam,ou=acme,dc=example,dc=com");
    let missing: Vec<_> = kept.difference(&unique).collect();
    assert!(missing.is_empty(), "entries skipped while users changed: {missing:?}");
    let extra: Vec<_> = unique.difference(&kept).collect();
    assert!(
        extra.iter().all(|dn| dn.starts_with("uid=aaron,") || dn.starts_with("uid=zed,") || dn.starts_with("uid=sam,")),
        "{extra:?}"
    );
    assert!(
        unique.contains("uid=zed,ou=acme,dc=example,dc=com"),
        "a user added past the position comes in a later page"
    );

    // A page larger than the server's size limit gets that many, and a cookie for the rest.
    let (entries, r) = paged(&mut ldap, 50, &[], "(objectClass=inetOrgPerson)").await;
    assert_eq!((r.rc, entries.len()), (0, 8), "{r:?}");
    let first = r.ctrls.iter().find(|c| matches!(c.0, Some(ControlType::PagedResults))).expect("control");
    let first_cookie = first.1.parse::<PagedResults>().cookie;
    assert!(!first_cookie.is_empty(), "more pages follow");
    // That cookie does not continue another search.
    let (entries, r) = paged(&mut ldap, 5, &first_cookie, "(objectClass=posixGroup)").await;
    assert!(r.rc != 0 && entries.is_empty(), "a cookie of another search was taken: {r:?}, {} entries", entries.len());
    // Nor one made up.
    let (entries, r) = paged(&mut ldap, 5, b"not a cookie", "(objectClass=inetOrgPerson)").await;
    assert!(r.rc != 0 && entries.is_empty(), "a made-up cookie was taken: {r:?}");

    // ldapsearch's own paging gets everything, in pages.
    let s = d.search_with(ADMIN_DN, ADMIN_PASSWORD, &["-b", ACME, "-E", "pr=7/noprompt"], "(objectClass=*)", &["1.1"]);
    assert_eq!(s.code, 0, "{s:?}");
    let mut now = kept.clone();
    now.extend(acme_users(&["aaron", "zed"]));
    assert_eq!(s.dns(), now, "acme as it is now");
    assert_eq!(s.entries.len(), 25);

    // Size limits without paging: the server's (8), or the client's when smaller.
    let s = d.search(ADMIN_DN, ADMIN_PASSWORD, ACME, "sub", "(objectClass=*)", &["1.1"]);
    assert_eq!((s.code, s.entries.len()), (4, 8), "server size limit: {}", s.stderr);
    let s = d.search_with(ADMIN_DN, ADMIN_PASSWORD, &["-b", ACME, "-z", "3"], "(objectClass=*)", &["1.1"]);
    assert_eq!((s.code, s.entries.len()), (4, 3), "client size limit: {}", s.stderr);
    let s = d.search_with(ADMIN_DN, ADMIN_PASSWORD, &["-b", ACME, "-z", "100"], "(objectClass=*)", &["1.1"]);
    assert_eq!((s.code, s.entries.len()), (4, 8), "the smaller limit wins: {}", s.stderr);
    let s = d.search_with(ADMIN_DN, ADMIN_PASSWORD, &["-b", ACME, "-z", "3"], "(objectClass=posixGroup)", &["1.1"]);
    assert_eq!((s.code, s.entries.len()), (0, 3), "exactly the limit is no excess: {}", s.stderr);
    let (entries, r) = {
        ldap.with_search_options(SearchOptions::new().sizelimit(2));
        find(&mut ldap, ACME, Scope::Subtree, "(uid=*)", &["1.1"]).await
    };
    assert_eq!((r.rc, entries.len()), (4, 2), "{r:?}");
}

/// StartTLS and LDAPS with the node's certificate (verified by the clients); where confidentiality is
/// required, a password bind over plain LDAP is refused (confidentialityRequired) while the same bind after
/// StartTLS, or over LDAPS, works.
#[tokio::test]
async fn starttls_and_ldaps_work_and_plain_binds_are_refused_where_configured() {
    let d = Directory::start("tls", "require_confidentiality = true", true).await;
    let alice = ("cn=alice,ou=acme", "Alice#2024!");

    let t = d.whoami(alice.0, alice.1);
    assert_eq!(t.code, 13, "plain password bind: {t:?}");
    let mut plain = d.connect().await;
    let r = plain.simple_bind(alice.0, alice.1).await.expect("bind");
    assert_eq!(r.rc, 13, "{r:?}");
    // Refused before the password is looked at: a wrong one gets the same answer (no oracle in clear).
    let wrong = plain.simple_bind(alice.0, "wrong").await.expect("bind");
    assert_eq!(answer(&wrong), answer(&r));
    let r = plain.simple_bind("", "").await.expect("bind");
    assert_eq!(r.rc, 0, "anonymous binds carry no password: {r:?}");

    // StartTLS (-ZZ: required to succeed, certificate verified against the node's).
    let t = d.tool("ldapwhoami", &["-x", "-ZZ", "-H", &d.ldap, "-D", alice.0, "-w", alice.1]);
    assert_eq!((t.code, t.stdout.trim()), (0, "dn:uid=alice,ou=acme"), "{t:?}");
    let t = d.tool(
        "ldapsearch",
        &["-x", "-ZZ", "-LLL", "-H", &d.ldap, "-D", alice.0, "-w", alice.1, "-b", ACME, "(uid=bob)", "mail"],
    );
    assert_eq!(t.code, 0, "{t:?}");
    assert_eq!(parse_ldif(&t.stdout)[0].values("mail"), ["bob@acme.example"]);
    // LDAPS.
    let t = d.tool("ldapwhoami", &["-x", "-H", &d.ldaps, "-D", alice.0, "-w", alice.1]);
    assert_eq!((t.code, t.stdout.trim()), (0, "dn:uid=alice,ou=acme"), "{t:?}");
    let t = d.tool(
        "ldapsearch",
        &["-x", "-LLL", "-H", &d.ldaps, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-b", ACME, "(uid=carol)", "1.1"],
    );
    assert_eq!((t.code, t.stdout.trim()), (0, "dn: uid=carol,ou=acme,dc=example,dc=com"), "{t:?}");
    // Wrong passwords over TLS are still refused as such.
    let t = d.tool("ldapwhoami", &["-x", "-ZZ", "-H", &d.ldap, "-D", alice.0, "-w", "wrong"]);
    assert_eq!(t.code, 49, "{t:?}");

    // The same with ldap3, and the certificate it is shown is the node's.
    let pem = std::fs::read_to_string(d.cert()).expect("cert");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).expect("PEM");
    for (url, starttls) in [(&d.ldap, true), (&d.ldaps, false)] {
        let settings = LdapConnSettings::new().set_starttls(starttls).set_no_tls_verify(true);
        let mut ldap = connect(url, settings).await;
        let r = ldap.simple_bind(alice.0, alice.1).await.expect("bind");
        assert_eq!(r.rc, 0, "{url} (StartTLS {starttls}): {r:?}");
        assert_eq!(ldap.get_peer_certificate().await.expect("peer cert"), Some(der.clone()), "{url}");
        let (exop, _) = ldap.extended(ldap3::exop::WhoAmI).await.expect("whoami").success().expect("ok");
        assert_eq!(exop.val.unwrap_or_default(), b"dn:uid=alice,ou=acme");
    }

    // The root DSE offers StartTLS on the plain listener, not over LDAPS.
    let ext = |url: &str| {
        let t = d.tool("ldapsearch", &["-x", "-LLL", "-H", url, "-b", "", "-s", "base", "supportedExtension"]);
        assert_eq!(t.code, 0, "{t:?}");
        parse_ldif(&t.stdout)[0].value_set("supportedExtension")
    };
    assert!(ext(&d.ldap).contains("1.3.6.1.4.1.1466.20037"));
    assert!(!ext(&d.ldaps).contains("1.3.6.1.4.1.1466.20037"));
}

/// Who sees what (COMPAT §8.1, README "LDAP"): anonymous clients the root DSE only; an ordinary user their
/// own entry; an organization admin their organization; a global admin everything. What a client may not
/// see answers exactly as what does not exist. With a configured suffix, naming contexts and the suffix as
/// a base. Sight is re-read on every operation.
#[tokio::test]
async fn each_client_sees_only_what_it_may() {
    let d = Directory::start("sight", "suffix = \"dc=example,dc=com\"", false).await;
    let suffix = "dc=example,dc=com";
    let bob = ("uid=bob,ou=acme,dc=example,dc=com", "hunter2-Bob");
    let alice = ("cn=alice,ou=acme", "Alice#2024!");
    let kenji = ("cn=kenji,ou=globex", "Kenji-Yamada-42");
    let contexts = |who: (&str, &str)| {
        let s = d.search(who.0, who.1, "", "base", "(objectClass=*)", &["namingContexts"]);
        assert_eq!(s.code, 0, "{s:?}");
        s.entries.first().map(|e| e.value_set("namingContexts")).unwrap_or_default()
    };

    // Anonymous: the root DSE, without naming contexts; every other search succeeds with nothing.
    let s = d.search("", "", "", "base", "(objectClass=*)", &["+"]);
    assert_eq!((s.code, s.entries.len()), (0, 1), "{s:?}");
    let dse = &s.entries[0];
    assert_eq!(dse.values("supportedLDAPVersion"), ["3"]);
    assert!(dse.value_set("supportedExtension").contains("1.3.6.1.4.1.4203.1.11.3"), "who am I: {dse:?}");
    assert!(dse.value_set("supportedControl").contains("1.2.840.113556.1.4.319"), "paging: {dse:?}");
    assert_eq!(dse.values("subschemaSubentry"), ["cn=Subschema"]);
    assert!(dse.values("namingContexts").is_empty(), "anonymous clients see no naming context: {dse:?}");
    for (base, scope) in [(suffix, "sub"), (ACME, "sub"), ("ou=*", "sub"), (bob.0, "base"), ("ou=acme", "base")] {
        let s = d.search("", "", base, scope, "(objectClass=*)", &[]);
        assert_eq!((s.code, s.entries.len()), (0, 0), "anonymous under {base}: {s:?}");
    }
    let s = d.search("", "", "cn=Subschema", "base", "(objectClass=*)", &["objectClasses"]);
    assert_eq!(s.code, 0, "{s:?}");
    assert!(s.entries[0].values("objectClasses").iter().any(|c| c.contains("posixAccount")), "{s:?}");

    // An ordinary user: their own entry, wherever they search from; nothing else exists for them.
    assert_eq!(contexts(bob), set(&["ou=acme,dc=example,dc=com"]));
    for (base, filter) in
        [(suffix, "(objectClass=*)"), (ACME, "(objectClass=*)"), ("ou=*", "(objectClass=*)"), (ACME, "(uid=bob)")]
    {
        let s = d.search(bob.0, bob.1, base, "sub", filter, &["1.1"]);
        assert_eq!((s.code, s.dns()), (0, set(&[bob.0])), "bob under {base} {filter}: {s:?}");
    }
    for filter in ["(uid=alice)", "(objectClass=posixGroup)", "(memberUid=bob)"] {
        let s = d.search(bob.0, bob.1, ACME, "sub", filter, &["1.1"]);
        assert_eq!((s.code, s.entries.len()), (0, 0), "bob {filter}: {s:?}");
    }
    let mut ldap = d.bound(bob.0, bob.1).await;
    let mut hidden = Vec::new();
    for base in [
        "uid=alice,ou=acme,dc=example,dc=com",  // another user: exists
        "uid=nobody,ou=acme,dc=example,dc=com", // does not exist
        "cn=engineering,ou=acme,dc=example,dc=com",
        "cn=nothing,ou=acme,dc=example,dc=com",
        "ou=globex,dc=example,dc=com",
        "ou=nowhere,dc=example,dc=com",
    ] {
        let (entries, r) = find(&mut ldap, base, Scope::Base, "(objectClass=*)", &["1.1"]).await;
        assert!(entries.is_empty(), "bob sees {base}");
        hidden.push((base, answer(&r)));
    }
    let distinct: BTreeSet<_> = hidden.iter().map(|(_, a)| a.clone()).collect();
    assert_eq!(distinct.len(), 1, "hidden and missing entries must answer alike: {hidden:?}");
    assert_eq!(distinct.into_iter().next().map(|a| a.0), Some(32));

    // An organization admin: their organization, all of it, nothing of the others.
    assert_eq!(contexts(alice), set(&["ou=acme,dc=example,dc=com"]));
    let s = d.search(alice.0, alice.1, suffix, "sub", "(objectClass=*)", &["1.1"]);
    assert_eq!((s.code, s.dns()), (0, all_of_acme()), "{s:?}");
    for base in ["ou=globex,dc=example,dc=com", "ou=built-in", "uid=kenji,ou=globex", "cn=design,ou=globex"] {
        let s = d.search(alice.0, alice.1, base, "sub", "(objectClass=*)", &["1.1"]);
        assert_eq!((s.code, s.entries.len()), (32, 0), "alice under {base}: {s:?}");
    }
    let s = d.search(alice.0, alice.1, "ou=*", "sub", "(objectClass=*)", &["1.1"]);
    assert_eq!((s.code, s.dns()), (0, all_of_acme()), "ou=* is every organization alice may see: {s:?}");
    let s = d.search(kenji.0, kenji.1, suffix, "sub", "(objectClass=*)", &["1.1"]);
    let mut globex = users("globex", suffix, &GLOBEX_USERS);
    globex.extend(groups("globex", suffix, &GLOBEX_GROUPS));
    globex.insert("ou=globex,dc=example,dc=com".into());
    assert_eq!((s.code, s.dns()), (0, globex.clone()), "{s:?}");

    // A global admin (a user of built-in, also ops): every organization.
    for admin in [(ADMIN_DN, ADMIN_PASSWORD), ("cn=ops,ou=built-in", "0ps!Automation#2025")] {
        let c = contexts(admin);
        for org in ["acme", "globex", "built-in"] {
            assert!(c.contains(&format!("ou={org},dc=example,dc=com")), "{admin:?}: {c:?}");
        }
        let s = d.search(admin.0, admin.1, suffix, "sub", "(objectClass=*)", &["1.1"]);
        assert_eq!(s.code, 0, "{s:?}");
        let dns = s.dns();
        assert!(dns.is_superset(&all_of_acme()) && dns.is_superset(&globex), "{admin:?}: {dns:?}");
        assert!(dns.contains("uid=ops,ou=built-in,dc=example,dc=com"));
        // One level under the suffix: the organizations themselves.
        let one = d.admin_dns(suffix, "one", "(objectClass=*)");
        assert!(one.iter().all(|dn| dn.starts_with("ou=")) && one.contains(ACME), "{one:?}");
    }

    // Sight is re-read on every operation: bob promoted on a bound connection sees acme at once; forbidden,
    // nothing.
    let (found, _) = find(&mut ldap, ACME, Scope::Subtree, "(objectClass=*)", &["1.1"]).await;
    assert_eq!(found.len(), 1);
    let (_, v) = d.node.admin_get("get-user?id=acme/bob").await;
    let mut u = v["data"].clone();
    u["isAdmin"] = json!(true);
    let (s, v) = d.node.admin_post("update-user?id=acme/bob", u.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (found, _) = find(&mut ldap, ACME, Scope::Subtree, "(objectClass=*)", &["1.1"]).await;
    assert_eq!(found.len(), 24, "bob, now an admin of acme");
    u["isAdmin"] = json!(false);
    u["isForbidden"] = json!(true);
    let (s, v) = d.node.admin_post("update-user?id=acme/bob", u).await;
    assert_eq!(s, 200, "{v}");
    let (found, r) = find(&mut ldap, ACME, Scope::Subtree, "(objectClass=*)", &["1.1"]).await;
    assert_eq!((r.rc, found.len()), (0, 0), "bob, now forbidden, sees nothing: {r:?}");
    let t = d.whoami(bob.0, bob.1);
    assert_eq!(t.code, 49, "and cannot bind again: {t:?}");
}

/// Group membership reads the same both ways: users' memberOf, groups' member and memberUid, in Casdoor's
/// `cn=<group>,ou=<org>` form under the client's base; and a change of a user's groups shows on both
/// sides at once.
#[tokio::test]
async fn group_membership_reads_the_same_both_ways() {
    let d = Directory::start("groups", "", false).await;
    let rest = "dc=example,dc=com";
    let admin = |base: &str, filter: &str, attrs: &[&str]| {
        let s = d.search(ADMIN_DN, ADMIN_PASSWORD, base, "sub", filter, attrs);
        assert_eq!(s.code, 0, "{filter}: {s:?}");
        s
    };
    let udn = |name: &str| format!("uid={name},ou=acme,{rest}");
    let gdn = |name: &str| format!("cn={name},ou=acme,{rest}");

    let g = admin(ACME, "(objectClass=posixGroup)", &["*", "+"]);
    let eng = g.entry(&gdn("engineering"));
    assert_eq!(eng.values("cn"), ["engineering"]);
    assert_eq!(eng.values("gidNumber"), ["20001"]);
    assert_eq!(eng.value_set("objectClass"), set(&["top", "posixGroup", "groupOfNames"]));
    assert_eq!(eng.value_set("memberUid"), set(&["bob", "carol", "walter"]));
    assert_eq!(eng.value_set("member"), set(&[&udn("bob"), &udn("carol"), &udn("walter")]));
    assert_eq!(eng.values("entryDN"), [gdn("engineering")]);
    assert_eq!(g.entry(&gdn("platform")).value_set("memberUid"), set(&["bob"]));
    let sales = g.entry(&gdn("sales"));
    assert_eq!(sales.value_set("member"), set(&[&udn("alice")]));
    assert_eq!(sales.values("gidNumber"), ["2258376375"], "no gid number: FNV-1a of the name (COMPAT §8.3)");

    // Both directions agree on every pair, in every organization.
    for (base, orgs) in [(ACME, "acme"), ("ou=globex,dc=example,dc=com", "globex")] {
        let users = admin(base, "(objectClass=posixAccount)", &["uid", "memberOf"]);
        let groups = admin(base, "(objectClass=posixGroup)", &["cn", "member", "memberUid"]);
        let from_users: BTreeSet<(String, String)> = users
            .entries
            .iter()
            .flat_map(|u| u.values("memberOf").into_iter().map(|g| (u.dn.to_lowercase(), g.to_lowercase())))
            .collect();
        let from_groups: BTreeSet<(String, String)> = groups
            .entries
            .iter()
            .flat_map(|g| g.values("member").into_iter().map(|m| (m.to_lowercase(), g.dn.to_lowercase())))
            .collect();
        assert_eq!(from_users, from_groups, "{orgs}: memberOf and member disagree");
        assert!(!from_users.is_empty(), "{orgs} has memberships");
        for g in &groups.entries {
            let by_uid: BTreeSet<String> =
                g.values("memberUid").iter().map(|n| format!("uid={n},{}", base).to_lowercase()).collect();
            let by_dn: BTreeSet<String> = g.values("member").iter().map(|m| m.to_lowercase()).collect();
            assert_eq!(by_uid, by_dn, "{}: memberUid and member disagree", g.dn);
        }
    }
    let yuki = admin("ou=globex", "(uid=yuki)", &["memberOf"]);
    assert_eq!(yuki.entries[0].value_set("memberOf"), set(&["cn=tokyo-office,ou=globex", "cn=design,ou=globex"]));

    // Filters on membership, both ways.
    let dns = |s: Searched| s.dns();
    assert_eq!(
        dns(admin(ACME, "(memberOf=cn=engineering,ou=acme)", &["1.1"])),
        acme_users(&["bob", "carol", "walter"])
    );
    assert_eq!(
        dns(admin(ACME, "(&(objectClass=posixGroup)(memberUid=bob))", &["1.1"])),
        set(&[&gdn("engineering"), &gdn("platform")])
    );
    assert_eq!(dns(admin(ACME, &format!("(member={})", udn("alice")), &["1.1"])), set(&[&gdn("sales")]));

    // alice joins engineering through the admin API: both sides show it at once, and leaving too.
    let (_, v) = d.node.admin_get("get-user?id=acme/alice").await;
    let mut u = v["data"].clone();
    u["groups"] = json!(["acme/sales", "acme/engineering"]);
    let (s, v) = d.node.admin_post("update-user?id=acme/alice", u.clone()).await;
    assert_eq!(s, 200, "{v}");
    let alice = admin(ACME, "(uid=alice)", &["memberOf"]);
    assert_eq!(alice.entries[0].value_set("memberOf"), set(&[&gdn("sales"), &gdn("engineering")]));
    let eng = admin(ACME, "(cn=engineering)", &["memberUid"]);
    assert_eq!(eng.entries[0].value_set("memberUid"), set(&["alice", "bob", "carol", "walter"]));
    u["groups"] = json!([]);
    let (s, v) = d.node.admin_post("update-user?id=acme/alice", u).await;
    assert_eq!(s, 200, "{v}");
    assert!(admin(ACME, "(uid=alice)", &["memberOf"]).entries[0].values("memberOf").is_empty());
    assert_eq!(dns(admin(ACME, "(memberUid=alice)", &["1.1"])), set(&[]));
}

/// Who am I (RFC 4532) with ldapwhoami, and Compare with ldapcompare: true, false, on integers and DNs,
/// refused on userPassword, noSuchObject for what the client may not see.
#[tokio::test]
async fn who_am_i_and_compare() {
    let d = Directory::start("compare", "", false).await;
    let t = d.whoami("uid=carol,ou=acme,dc=example,dc=com", "Carol_pass_99");
    assert_eq!((t.code, t.stdout.trim()), (0, "dn:uid=carol,ou=acme"), "{t:?}");
    let t = d.whoami("", "");
    assert_eq!((t.code, t.stdout.trim()), (0, "anonymous"), "{t:?}");

    let compare = |who: (&str, &str), dn: &str, assertion: &str| {
        let t = d.tool("ldapcompare", &["-x", "-H", &d.ldap, "-D", who.0, "-w", who.1, dn, assertion]);
        (t.code, t.stdout.trim().to_string())
    };
    let admin = (ADMIN_DN, ADMIN_PASSWORD);
    let bob = "uid=bob,ou=acme,dc=example,dc=com";
    assert_eq!(compare(admin, bob, "mail:bob@acme.example"), (6, "TRUE".into()));
    assert_eq!(compare(admin, bob, "mail:BOB@ACME.EXAMPLE"), (6, "TRUE".into()), "case-insensitive");
    assert_eq!(compare(admin, bob, "mail:alice@acme.example"), (5, "FALSE".into()));
    assert_eq!(compare(admin, bob, "uidNumber:10002"), (6, "TRUE".into()));
    assert_eq!(compare(admin, bob, "memberOf:cn=platform,ou=acme"), (6, "TRUE".into()));
    assert_eq!(compare(admin, bob, "memberOf:cn=sales,ou=acme"), (5, "FALSE".into()));
    assert_eq!(compare(admin, "cn=engineering,ou=acme", "memberUid:carol"), (6, "TRUE".into()));
    let (code, _) = compare(admin, bob, "userPassword:hunter2-Bob");
    assert_eq!(code, 50, "no password oracle");
    let (code, _) = compare(admin, bob, "userPassword:wrong");
    assert_eq!(code, 50, "refused alike whatever the value");
    let (code, _) = compare(admin, bob, "mobile:4155550101");
    assert!(code != 6 && code != 5 && code != 0, "bob has no mobile: {code}");
    let (code, _) = compare(admin, "uid=nobody,ou=acme", "cn:nobody");
    assert_eq!(code, 32);
    // An ordinary user compares on their own entry only.
    let bob_login = (bob, "hunter2-Bob");
    assert_eq!(compare(bob_login, bob, "cn:bob"), (6, "TRUE".into()));
    let (code, _) = compare(bob_login, "uid=alice,ou=acme", "cn:alice");
    assert_eq!(code, 32, "alice is not visible to bob");
    let t = d.tool("ldapcompare", &["-x", "-H", &d.ldap, bob, "cn:bob"]);
    assert_eq!(t.code, 32, "anonymous: {t:?}");
}

/// Hand-encoded BER: a length, then a TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend(&bytes[skip..]);
    }
    out.extend(content);
    out
}

/// An LDAP message: SEQUENCE { messageID, protocolOp }.
fn message(id: u8, op: Vec<u8>) -> Vec<u8> {
    let mut content = vec![0x02, 0x01, id];
    content.extend(op);
    tlv(0x30, &content)
}

/// A simple BindRequest ([APPLICATION 0]).
fn bind_request(version: u8, dn: &str, password: &str) -> Vec<u8> {
    let mut c = vec![0x02, 0x01, version];
    c.extend(tlv(0x04, dn.as_bytes()));
    c.extend(tlv(0x80, password.as_bytes()));
    tlv(0x60, &c)
}

/// A SearchRequest ([APPLICATION 3]) for the root DSE with an equality filter `attr=value`.
fn search_request(base: &str, attr: &str, value: &[u8]) -> Vec<u8> {
    let mut c = tlv(0x04, base.as_bytes());
    c.extend([0x0a, 0x01, 0x00]); // scope base
    c.extend([0x0a, 0x01, 0x00]); // never deref
    c.extend([0x02, 0x01, 0x00]); // size limit
    c.extend([0x02, 0x01, 0x00]); // time limit
    c.extend([0x01, 0x01, 0x00]); // typesOnly false
    let mut eq = tlv(0x04, attr.as_bytes());
    eq.extend(tlv(0x04, value));
    c.extend(tlv(0xa3, &eq));
    c.extend(tlv(0x30, &[]));
    tlv(0x63, &c)
}

/// Splits one TLV off `buf`: (tag, content, rest), or `None` if incomplete.
fn split_tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, head) = if first & 0x80 == 0 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        let bytes = buf.get(2..2 + n)?;
        (bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize), 2 + n)
    };
    let content = buf.get(head..head + len)?;
    Some((tag, content, &buf[head + len..]))
}

/// A decoded answer: message id, protocolOp tag, its fields (TLVs inside the op).
#[derive(Debug)]
struct Answer {
    id: u8,
    op: u8,
    fields: Vec<(u8, Vec<u8>)>,
}

impl Answer {
    /// The resultCode of an LDAPResult-shaped answer.
    fn code(&self) -> u8 {
        self.fields.first().filter(|f| f.0 == 0x0a).and_then(|f| f.1.first().copied()).expect("resultCode")
    }
}

/// Reads whole messages from a raw connection until it closes (or `count` messages have come).
async fn read_answers(stream: &mut TcpStream, count: usize) -> (Vec<Answer>, bool) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        while let Some((tag, content, rest)) = split_tlv(&buf) {
            assert_eq!(tag, 0x30, "an LDAPMessage is a SEQUENCE");
            let (_, id, after) = split_tlv(content).expect("messageID");
            let (op, op_content, _) = split_tlv(after).expect("protocolOp");
            let mut fields = Vec::new();
            let mut r = op_content;
            while let Some((t, c, rest)) = split_tlv(r) {
                fields.push((t, c.to_vec()));
                r = rest;
            }
            out.push(Answer { id: id.last().copied().unwrap_or(0), op, fields });
            buf = rest.to_vec();
        }
        if out.len() >= count {
            return (out, false);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => panic!("no answer within 15 s (have {out:?})"),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => buf.extend(&chunk[..n]),
        }
    }
}

/// Whether `answers` is exactly a Notice of Disconnection (RFC 4511 §4.4.1).
fn is_notice_of_disconnection(answers: &[Answer]) -> bool {
    matches!(answers, [a] if a.id == 0 && a.op == 0x78
        && a.fields.iter().any(|(t, v)| *t == 0x8a && v == b"1.3.6.1.4.1.1466.20036"))
}

/// Malformed BER and oversized messages end their connection (a Notice of Disconnection, then close) and
/// nothing else: the next connection binds and searches. Unknown and write operations, a wrong protocol
/// version, pipelined requests, abandon and unbind.
#[tokio::test]
async fn malformed_and_oversized_messages_end_only_their_connection() {
    let d = Directory::start("malformed", "", false).await;
    let addr = d.ldap.trim_start_matches("ldap://").to_string();
    let works = || async {
        let mut ldap = d.bound("cn=bob,ou=acme", "hunter2-Bob").await;
        let (entries, r) = find(&mut ldap, ACME, Scope::Subtree, "(uid=bob)", &["uid"]).await;
        assert_eq!((r.rc, entries.len()), (0, 1), "a new connection after the bad one works: {r:?}");
    };

    // Not LDAP at all, a SEQUENCE holding no operation, an unknown operation, a truncated inner length.
    let bad: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        &[0x30, 0x03, 0x02, 0x01, 0x01],
        &[0x30, 0x05, 0x02, 0x01, 0x01, 0x7e, 0x00],
        &[0x30, 0x06, 0x02, 0x01, 0x01, 0x63, 0x7f, 0x00],
    ];
    for bytes in bad {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        let (answers, closed) = read_answers(&mut s, usize::MAX).await;
        assert!(closed, "{bytes:02x?}: the connection stays open");
        assert!(is_notice_of_disconnection(&answers), "{bytes:02x?}: {answers:?}");
        works().await;
    }

    // A complete message over the 64 KiB limit (a search with a 70,000-byte filter value).
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(&message(1, search_request("", "cn", &vec![b'a'; 70_000]))).await.expect("write");
    let (answers, closed) = read_answers(&mut s, usize::MAX).await;
    assert!(closed && is_notice_of_disconnection(&answers), "oversized message: {answers:?}");
    works().await;
    // One that announces 16 MiB and keeps coming: closed long before it is all sent.
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let mut sent = 0usize;
    let mut head = vec![0x30, 0x84];
    head.extend(16_000_000u32.to_be_bytes());
    let _ = s.write_all(&head).await;
    let block = vec![0x04u8; 16 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), s.write_all(&block)).await {
            Ok(Ok(())) => sent += block.len(),
            Ok(Err(_)) => break,
            Err(_) => panic!("the server stopped reading a 16 MiB message but kept the connection open"),
        }
        // What the kernel buffers on both ends is accepted before the close shows; the message is not.
        assert!(sent < 16_000_000, "the server read a 16 MiB message ({sent} bytes sent)");
    }
    works().await;
    // The same through a client library: its request fails, the next connection is fine.
    let mut ldap = d.bound(ADMIN_DN, ADMIN_PASSWORD).await;
    let huge = format!("(cn={})", "x".repeat(70_000));
    let r = ldap.search(ACME, Scope::Subtree, &huge, vec!["1.1"]).await;
    assert!(r.is_err(), "an oversized search was answered: {r:?}");
    works().await;

    // Version 2 binds: protocolError. Pipelined requests are answered in order, each with its id.
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let mut batch = message(1, bind_request(2, "", ""));
    // SASL PLAIN carrying bob's right password: still not supported.
    let mut sasl = vec![0x02, 0x01, 0x03];
    sasl.extend(tlv(0x04, b""));
    let mut creds = tlv(0x04, b"PLAIN");
    creds.extend(tlv(0x04, b"\0bob\0hunter2-Bob"));
    sasl.extend(tlv(0xa3, &creds));
    batch.extend(message(2, tlv(0x60, &sasl)));
    batch.extend(message(3, bind_request(3, "cn=bob,ou=acme", "hunter2-Bob")));
    batch.extend(message(4, search_request("", "objectClass", b"top")));
    let whoami = tlv(0x77, &tlv(0x80, b"1.3.6.1.4.1.4203.1.11.3"));
    batch.extend(message(5, whoami));
    // Abandon of a finished operation: no answer; then unbind: the server closes.
    batch.extend(message(6, tlv(0x50, &[0x04])));
    batch.extend(message(7, tlv(0x42, &[])));
    s.write_all(&batch).await.expect("write");
    let (answers, closed) = read_answers(&mut s, usize::MAX).await;
    assert!(closed, "unbind closes the connection");
    let shape: Vec<(u8, u8)> = answers.iter().map(|a| (a.id, a.op)).collect();
    assert_eq!(shape, [(1, 0x61), (2, 0x61), (3, 0x61), (4, 0x64), (4, 0x65), (5, 0x78)], "{answers:?}");
    assert_eq!(answers[0].code(), 2, "version 2: protocolError");
    assert_eq!(answers[1].code(), 7, "SASL: authMethodNotSupported");
    assert_eq!(answers[2].code(), 0, "bob's bind");
    assert_eq!(answers[4].code(), 0);
    assert_eq!(answers[5].code(), 0);
    let authzid = answers[5].fields.iter().find(|f| f.0 == 0x8b).map(|f| f.1.clone());
    assert_eq!(authzid.as_deref(), Some(&b"dn:uid=bob,ou=acme"[..]), "{answers:?}");

    // Writes and unknown extended operations are refused; the connection goes on.
    let mut ldap = d.bound(ADMIN_DN, ADMIN_PASSWORD).await;
    let new = "uid=eve,ou=acme";
    let r = ldap.add(new, vec![("objectClass", ["inetOrgPerson"].into())]).await.expect("add");
    assert_eq!(r.rc, 53, "add: {r:?}");
    let r = ldap.modify("uid=bob,ou=acme", vec![ldap3::Mod::Replace("mail", ["x@y.z"].into())]).await.expect("modify");
    assert_eq!(r.rc, 53, "modify: {r:?}");
    let r = ldap.delete("uid=bob,ou=acme").await.expect("delete");
    assert_eq!(r.rc, 53, "delete: {r:?}");
    let r = ldap.modifydn("uid=bob,ou=acme", "uid=robert", true, None).await.expect("modrdn");
    assert_eq!(r.rc, 53, "modrdn: {r:?}");
    let r = ldap.extended(ldap3::exop::Exop { name: Some("1.2.3.4.5".into()), val: None }).await.expect("exop").1;
    assert_eq!(r.rc, 2, "unknown extended operation: {r:?}");
    let (entries, r) = find(&mut ldap, ACME, Scope::Subtree, "(uid=bob)", &["mail"]).await;
    assert_eq!((r.rc, entries.len()), (0, 1), "nothing was written, the connection still serves");
    assert_eq!(entries[0].attrs["mail"], ["bob@acme.example"]);
    let (s, _) = d.node.get("/api/health").await;
    assert_eq!(s, 200, "the node is healthy");
}

/// A user added through the admin API binds and is found at once; a changed password, a forbidden and a
/// deleted user too.
#[tokio::test]
async fn a_user_added_through_the_admin_api_binds_and_is_found_at_once() {
    let d = Directory::start("added", "", false).await;
    let (s, v) = d
        .node
        .admin_post(
            "add-user",
            json!({"owner": "acme", "name": "newbie", "password": "Newbie-Password-1", "displayName": "New Bie",
                   "email": "newbie@acme.example", "phone": "4155550199", "groups": ["acme/engineering"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // No waiting: a single node has applied its own write when it answers.
    let t = d.whoami("cn=newbie,ou=acme", "Newbie-Password-1");
    assert_eq!((t.code, t.stdout.trim()), (0, "dn:uid=newbie,ou=acme"), "{t:?}");
    let t = d.whoami("cn=newbie@acme.example,ou=acme,dc=example,dc=com", "Newbie-Password-1");
    assert_eq!(t.code, 0, "by email: {t:?}");
    for filter in ["(uid=newbie)", "(mail=newbie@acme.example)", "(mobile=4155550199)", "(displayName=new*)"] {
        assert_eq!(d.admin_dns(ACME, "sub", filter), acme_users(&["newbie"]), "{filter}");
    }
    let s = d.search(ADMIN_DN, ADMIN_PASSWORD, "cn=engineering,ou=acme", "base", "(objectClass=*)", &["memberUid"]);
    assert!(s.entries[0].value_set("memberUid").contains("newbie"), "{s:?}");
    let s = d.search("cn=newbie,ou=acme", "Newbie-Password-1", ACME, "sub", "(objectClass=*)", &["memberOf"]);
    assert_eq!(s.dns(), acme_users(&["newbie"]), "newbie sees itself: {s:?}");
    assert_eq!(s.entries[0].values("memberOf"), ["cn=engineering,ou=acme,dc=example,dc=com"]);

    // A new password: the old one fails at once, the new one works.
    let (_, v) = d.node.admin_get("get-user?id=acme/newbie").await;
    let mut u = v["data"].clone();
    u["password"] = json!("Newbie-Password-2");
    u["passwordType"] = json!("");
    let (s, v) = d.node.admin_post("update-user?id=acme/newbie", u.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(d.whoami("cn=newbie,ou=acme", "Newbie-Password-1").code, 49);
    assert_eq!(d.whoami("cn=newbie,ou=acme", "Newbie-Password-2").code, 0);

    // Forbidden: refused as any failure; deleted: refused and gone from searches.
    let (_, v) = d.node.admin_get("get-user?id=acme/newbie").await;
    let mut u = v["data"].clone();
    u["isForbidden"] = json!(true);
    let (s, v) = d.node.admin_post("update-user?id=acme/newbie", u).await;
    assert_eq!(s, 200, "{v}");
    let forbidden = d.whoami("cn=newbie,ou=acme", "Newbie-Password-2");
    let wrong = d.whoami("cn=alice,ou=acme", "wrong");
    assert_eq!((forbidden.code, &forbidden.stderr), (49, &wrong.stderr), "{forbidden:?}");
    let (s, v) = d.node.admin_post("delete-user", json!({"owner": "acme", "name": "newbie"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(d.whoami("cn=newbie,ou=acme", "Newbie-Password-2").code, 49);
    assert_eq!(d.admin_dns(ACME, "sub", "(|(uid=newbie)(mail=newbie@acme.example))"), set(&[]));
    let s = d.search(ADMIN_DN, ADMIN_PASSWORD, "cn=engineering,ou=acme", "base", "(objectClass=*)", &["memberUid"]);
    assert!(!s.entries[0].value_set("memberUid").contains("newbie"), "{s:?}");
}

/// A node without data whose `[ldap]` section is `config`, and its LDAP address.
async fn bare_node(config: &str) -> (Node, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("jeton.toml");
    std::fs::write(&path, format!("[ldap]\n{config}\n")).expect("config file");
    let addr = format!("127.0.0.1:{}", free_port());
    let path = path.to_string_lossy().into_owned();
    let node = Node::start_in(&tmp.path().join("data"), free_port(), &["--config", &path, "--ldap-addr", &addr]).await;
    (node, addr, tmp)
}

/// Reads the root DSE on a raw connection: whether the server answered it.
async fn root_dse_answers(s: &mut TcpStream, id: u8) -> bool {
    if s.write_all(&message(id, search_request("", "objectClass", b"top"))).await.is_err() {
        return false;
    }
    let (answers, _) = read_answers(s, 2).await;
    answers.iter().map(|a| (a.id, a.op)).collect::<Vec<_>>() == [(id, 0x64), (id, 0x65)]
}

/// The configured limits hold: connections per address (further ones closed at once), message size, the
/// time to receive a message; and a stopping node tells its idle clients (Notice of Disconnection).
#[tokio::test]
async fn limits_bound_connections_message_size_and_idle_time_and_shutdown_says_so() {
    let (mut node, addr, _tmp) = bare_node("max_connections_per_address = 2\nmax_message_bytes = 2048").await;
    let mut a = TcpStream::connect(&addr).await.expect("connect");
    let mut b = TcpStream::connect(&addr).await.expect("connect");
    assert!(root_dse_answers(&mut a, 1).await && root_dse_answers(&mut b, 1).await, "two connections are served");
    let mut c = TcpStream::connect(&addr).await.expect("the TCP connection itself is accepted");
    let (answers, closed) = read_answers(&mut c, usize::MAX).await;
    assert!(closed && answers.is_empty(), "a third connection from one address is closed at once: {answers:?}");
    assert!(metric(&node, "jeton_ldap_connections_refused_total{reason=\"per_address_limit\"}").await >= 1.0);
    // One closes: room for another (once the server has seen it go).
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut d = loop {
        let mut d = TcpStream::connect(&addr).await.expect("connect");
        if root_dse_answers(&mut d, 1).await {
            break d;
        }
        assert!(Instant::now() < deadline, "no connection is admitted after one of two closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Messages: 1,500 bytes are served, 3,000 bytes end the connection.
    d.write_all(&message(2, search_request("", "description", &vec![b'a'; 1500]))).await.expect("write");
    let (answers, _) = read_answers(&mut d, 1).await;
    assert_eq!(answers.iter().map(|x| (x.id, x.op)).collect::<Vec<_>>(), [(2, 0x65)], "{answers:?}");
    d.write_all(&message(3, search_request("", "description", &vec![b'a'; 3000]))).await.expect("write");
    let (answers, closed) = read_answers(&mut d, usize::MAX).await;
    assert!(closed && is_notice_of_disconnection(&answers), "over max_message_bytes: {answers:?}");

    // Shutdown: an idle connection is told (Notice of Disconnection, unavailable) and closed.
    node.stop();
    let (answers, closed) = read_answers(&mut b, usize::MAX).await;
    assert!(closed && is_notice_of_disconnection(&answers), "at shutdown: {answers:?}");
    assert_eq!(answers[0].code(), 52, "unavailable");

    // The time to receive a message: an idle connection is closed; one that keeps asking is not.
    let (_node, addr, _tmp) = bare_node("read_timeout_secs = 1").await;
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    let mut busy = TcpStream::connect(&addr).await.expect("connect");
    for id in 1..=10 {
        assert!(root_dse_answers(&mut busy, id).await, "a connection that keeps asking is served (message {id})");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (answers, closed) = read_answers(&mut idle, usize::MAX).await;
    assert!(closed && answers.is_empty(), "the idle connection was closed: {answers:?}");
}
