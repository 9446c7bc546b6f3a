//! The directory over a real single-node state (sled + openraft in a temporary directory): who sees what,
//! scopes, bases, paging, limits, and equality answered from the indexes — without a socket.

use jeton_raft::model::{Group, Organization, User};
use jeton_raft::node::RaftSettings;
use jeton_raft::{Command, Outcome, PutMode, ReplicaNode};

use crate::directory::{Directory, DirectoryConfig, DirectoryError, Filter, Found, Scope, Search, Viewer};

struct State {
    node: ReplicaNode,
    directory: Directory,
    _dir: tempfile::TempDir,
}

fn user(owner: &str, name: &str, groups: &[&str]) -> User {
    User {
        owner: owner.into(),
        name: name.into(),
        id: format!("id-{owner}-{name}"),
        email: format!("{name}@{owner}.example"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        created_time: "2024-01-02T03:04:05Z".into(),
        ..Default::default()
    }
}

fn group(owner: &str, name: &str) -> Group {
    Group { owner: owner.into(), name: name.into(), is_enabled: true, ..Default::default() }
}

/// Organizations built-in (admin), acme (boss the admin, alice and bob in sales, carol) and other (dave).
async fn state() -> State {
    let dir = tempfile::tempdir().expect("tempdir");
    let node =
        ReplicaNode::start(&dir.path().join("data"), 1, "127.0.0.1:1", &RaftSettings::default(), Default::default())
            .await
            .expect("node");
    let mut commands = Vec::new();
    for org in ["built-in", "acme", "other"] {
        commands.push(Command::PutOrganization {
            org: Organization { name: org.into(), ..Default::default() },
            mode: PutMode::Create,
        });
    }
    commands.push(Command::PutGroup { group: group("acme", "sales"), mode: PutMode::Create });
    commands.push(Command::PutGroup { group: group("acme", "support"), mode: PutMode::Create });
    let boss = User { is_admin: true, ..user("acme", "boss", &[]) };
    for u in [
        user("built-in", "admin", &[]),
        boss,
        user("acme", "alice", &["acme/sales"]),
        user("acme", "bob", &["acme/sales", "acme/support"]),
        User { email: "ALICE@acme.example".into(), ..user("acme", "carol", &[]) },
        user("other", "dave", &[]),
    ] {
        commands.push(Command::PutUser { user: u, mode: PutMode::Create });
    }
    assert_eq!(node.write(Command::Batch { commands }).await.expect("write").outcome, Outcome::Applied);
    let directory = Directory::new(
        node.store.clone(),
        DirectoryConfig { admin_org: "built-in".into(), suffix: "dc=example,dc=com".into() },
    );
    State { node, directory, _dir: dir }
}

fn who(owner: &str, name: &str) -> Viewer {
    Viewer::User { owner: owner.into(), name: name.into() }
}

fn search(s: &State, viewer: &Viewer, base: &str, scope: Scope, filter: &Filter) -> Result<Found, DirectoryError> {
    s.directory.search(
        viewer,
        &Search { base, scope, filter, size_limit: 0, time_limit: None, after: None, operational: true },
    )
}

fn dns(found: &Found) -> Vec<String> {
    found.entries.iter().map(|e| e.dn.clone()).collect()
}

fn eq(a: &str, v: &str) -> Filter {
    Filter::Equal(a.into(), v.into())
}

fn any() -> Filter {
    Filter::Present("objectClass".into())
}

#[tokio::test]
async fn each_viewer_sees_what_it_may() {
    let s = state().await;
    let base = "ou=acme,dc=example,dc=com";
    let all = search(&s, &who("built-in", "admin"), base, Scope::Subtree, &any()).unwrap();
    assert_eq!(
        dns(&all),
        [
            "ou=acme,dc=example,dc=com",
            "cn=sales,ou=acme,dc=example,dc=com",
            "cn=support,ou=acme,dc=example,dc=com",
            "uid=alice,ou=acme,dc=example,dc=com",
            "uid=bob,ou=acme,dc=example,dc=com",
            "uid=boss,ou=acme,dc=example,dc=com",
            "uid=carol,ou=acme,dc=example,dc=com",
        ]
    );
    let org_admin = search(&s, &who("acme", "boss"), base, Scope::Subtree, &any()).unwrap();
    assert_eq!(dns(&org_admin), dns(&all), "an organization admin sees its organization");
    assert_eq!(
        search(&s, &who("acme", "boss"), "ou=other", Scope::Subtree, &any()).unwrap_err(),
        DirectoryError::NoSuchObject,
        "and not another"
    );
    let own = search(&s, &who("acme", "alice"), base, Scope::Subtree, &any()).unwrap();
    assert_eq!(dns(&own), ["uid=alice,ou=acme,dc=example,dc=com"], "a user sees only their own entry");
    let own = search(&s, &who("acme", "alice"), base, Scope::Subtree, &eq("uid", "bob")).unwrap();
    assert!(own.entries.is_empty());
    assert_eq!(
        search(&s, &who("acme", "alice"), "uid=bob,ou=acme,dc=example,dc=com", Scope::Base, &any()).unwrap_err(),
        DirectoryError::NoSuchObject,
        "another user's entry looks absent"
    );
    assert_eq!(
        search(&s, &who("acme", "alice"), "uid=nobody,ou=acme,dc=example,dc=com", Scope::Base, &any()).unwrap_err(),
        DirectoryError::NoSuchObject,
        "exactly like one that does not exist"
    );
    let anonymous = search(&s, &Viewer::Anonymous, base, Scope::Subtree, &any()).unwrap();
    assert!(anonymous.entries.is_empty(), "anonymous sees nothing");
    // Everything (ou=* and the suffix) for the global admin; only its own organization's base for others.
    let every = search(&s, &who("built-in", "admin"), "ou=*", Scope::Subtree, &eq("objectClass", "posixAccount"));
    assert_eq!(every.unwrap().entries.len(), 6);
    let suffix = search(&s, &who("acme", "boss"), "dc=example,dc=com", Scope::Subtree, &eq("objectClass", "person"));
    assert_eq!(suffix.unwrap().entries.len(), 4);
    let contexts = s.directory.naming_contexts(&who("acme", "alice")).unwrap();
    assert_eq!(contexts, ["ou=acme,dc=example,dc=com"]);
    assert_eq!(s.directory.naming_contexts(&who("built-in", "admin")).unwrap().len(), 3);
    assert!(s.directory.naming_contexts(&Viewer::Anonymous).unwrap().is_empty());
}

#[tokio::test]
async fn a_disabled_or_demoted_viewer_loses_its_sight_at_once() {
    let s = state().await;
    let boss = who("acme", "boss");
    assert_eq!(
        search(&s, &boss, "ou=acme,dc=example,dc=com", Scope::OneLevel, &eq("objectClass", "person"))
            .unwrap()
            .entries
            .len(),
        4
    );
    let demoted = User { is_admin: false, ..user("acme", "boss", &[]) };
    s.node.write(Command::PutUser { user: demoted, mode: PutMode::Upsert }).await.unwrap();
    let found = search(&s, &boss, "ou=acme,dc=example,dc=com", Scope::OneLevel, &eq("objectClass", "person")).unwrap();
    assert_eq!(dns(&found), ["uid=boss,ou=acme,dc=example,dc=com"]);
    let disabled = User { is_forbidden: true, ..user("acme", "boss", &[]) };
    s.node.write(Command::PutUser { user: disabled, mode: PutMode::Upsert }).await.unwrap();
    assert!(search(&s, &boss, "ou=acme,dc=example,dc=com", Scope::Subtree, &any()).unwrap().entries.is_empty());
}

#[tokio::test]
async fn scopes_and_bases() {
    let s = state().await;
    let admin = who("built-in", "admin");
    let one = search(&s, &admin, "ou=acme,dc=example,dc=com", Scope::OneLevel, &any()).unwrap();
    assert_eq!(one.entries.len(), 6, "groups and users, not the organization itself");
    let base = search(&s, &admin, "ou=acme,dc=example,dc=com", Scope::Base, &any()).unwrap();
    assert_eq!(dns(&base), ["ou=acme,dc=example,dc=com"]);
    let user = search(&s, &admin, "UID=Alice,OU=acme,DC=x", Scope::Base, &any()).unwrap();
    assert_eq!(dns(&user), ["uid=alice,ou=acme,dc=x"], "names match ignoring case; the client's rest is echoed");
    let casdoor =
        search(&s, &admin, "uid=id-acme-alice,cn=alice,ou=acme,dc=example,dc=com", Scope::Base, &any()).unwrap();
    assert_eq!(dns(&casdoor), ["uid=alice,ou=acme,dc=example,dc=com"], "Casdoor's entry DN");
    let group = search(&s, &admin, "cn=sales,ou=acme,dc=example,dc=com", Scope::Base, &any()).unwrap();
    assert_eq!(group.entries[0].get("memberUid").unwrap().values, ["alice", "bob"]);
    assert_eq!(
        group.entries[0].get("member").unwrap().values,
        ["uid=alice,ou=acme,dc=example,dc=com", "uid=bob,ou=acme,dc=example,dc=com"]
    );
    let cn_user = search(&s, &admin, "cn=carol,ou=acme,dc=example,dc=com", Scope::Base, &any()).unwrap();
    assert_eq!(dns(&cn_user), ["uid=carol,ou=acme,dc=example,dc=com"], "Casdoor's bind DN form names a user too");
    assert_eq!(search(&s, &admin, "ou=nope", Scope::Subtree, &any()).unwrap_err(), DirectoryError::NoSuchObject);
    assert_eq!(search(&s, &admin, "dc=elsewhere", Scope::Subtree, &any()).unwrap_err(), DirectoryError::NoSuchObject);
    assert_eq!(search(&s, &admin, "not a dn", Scope::Subtree, &any()).unwrap_err(), DirectoryError::InvalidDn);
}

#[tokio::test]
async fn equality_uses_the_indexes_and_membership_agrees_both_ways() {
    let s = state().await;
    let admin = who("built-in", "admin");
    let found =
        search(&s, &admin, "ou=acme,dc=example,dc=com", Scope::Subtree, &eq("mail", "alice@ACME.example")).unwrap();
    assert_eq!(
        dns(&found),
        ["uid=alice,ou=acme,dc=example,dc=com", "uid=carol,ou=acme,dc=example,dc=com"],
        "every user with the email, not the first"
    );
    let found =
        search(&s, &admin, "ou=acme,dc=example,dc=com", Scope::Subtree, &eq("memberOf", "cn=SALES,ou=acme,dc=any"))
            .unwrap();
    assert_eq!(dns(&found), ["uid=alice,ou=acme,dc=example,dc=com", "uid=bob,ou=acme,dc=example,dc=com"]);
    for u in &found.entries {
        assert!(u.get("memberOf").unwrap().values.contains(&"cn=sales,ou=acme,dc=example,dc=com".to_string()));
    }
    let found =
        search(&s, &admin, "ou=acme,dc=example,dc=com", Scope::Subtree, &eq("entryUUID", "id-acme-bob")).unwrap();
    assert_eq!(dns(&found), ["uid=bob,ou=acme,dc=example,dc=com"]);
    let filter = Filter::And(vec![eq("objectClass", "posixGroup"), eq("memberUid", "bob")]);
    let groups = search(&s, &admin, "ou=acme,dc=example,dc=com", Scope::Subtree, &filter).unwrap();
    assert_eq!(dns(&groups), ["cn=sales,ou=acme,dc=example,dc=com", "cn=support,ou=acme,dc=example,dc=com"]);
    assert!(!s.directory.needs_scan(&eq("uid", "x")));
    assert!(s.directory.needs_scan(&eq("sn", "x")));
    // A membership change shows both ways at once.
    s.node.write(Command::PutUser { user: user("acme", "bob", &[]), mode: PutMode::Upsert }).await.unwrap();
    let found = search(&s, &admin, "ou=acme,dc=example,dc=com", Scope::Subtree, &eq("memberOf", "acme/sales")).unwrap();
    assert_eq!(dns(&found), ["uid=alice,ou=acme,dc=example,dc=com"]);
    let sales = search(&s, &admin, "cn=sales,ou=acme,dc=example,dc=com", Scope::Base, &any()).unwrap();
    assert_eq!(sales.entries[0].get("memberUid").unwrap().values, ["alice"]);
    // Removing a user removes its index entries.
    s.node.write(Command::DeleteUser { owner: "acme".into(), name: "carol".into() }).await.unwrap();
    let found =
        search(&s, &admin, "ou=acme,dc=example,dc=com", Scope::Subtree, &eq("mail", "alice@acme.example")).unwrap();
    assert_eq!(dns(&found), ["uid=alice,ou=acme,dc=example,dc=com"]);
}

#[tokio::test]
async fn size_limits_and_pages() {
    let s = state().await;
    let admin = who("built-in", "admin");
    let filter = eq("objectClass", "person");
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = s
            .directory
            .search(
                &admin,
                &Search {
                    base: "ou=*",
                    scope: Scope::Subtree,
                    filter: &filter,
                    size_limit: 2,
                    time_limit: None,
                    after,
                    operational: false,
                },
            )
            .unwrap();
        seen.extend(dns(&page));
        if !page.truncated {
            break;
        }
        after = page.next;
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "each entry once, in order");
}
