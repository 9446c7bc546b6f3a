//! NT-hash credentials: what lets MS-CHAPv2 (RADIUS) check users whose password is stored as a hash.
//!
//! MS-CHAPv2 proves knowledge of the password's NT hash (RFC 2759 §8.3: MD4 of the password in UTF-16LE),
//! which cannot be worked out from a bcrypt, argon2 or salted-digest hash. An organization listed in
//! `[radius] nt_hash_organizations` lets the node derive it instead, at the moment the password is known:
//! after a successful password sign-in ([`Passwords::verify`]: the OAuth password grant, an LDAP bind, RADIUS
//! PAP) of one of its users who
//! - is not stored in clear (a `plain` password answers challenges as it is),
//! - may sign in (not disabled, not deleted), signed in with their own password (never the master
//!   password), and
//! - has no current credential.
//!
//! The hash is sealed with the cluster's key-encryption key (AES-256-GCM, with the user's id and the
//! credential's binding as associated data, so a sealed hash opens only in the record it was made for) and
//! written with [`Command::PutNtCredential`] in the background: the sign-in does not wait for it. The
//! record is bound to the stored password ([`NtCredential::binding`]); the state machine refuses one whose
//! password changed on the way and drops it when the password changes or the user goes, and a credential
//! whose binding does not match is ignored here as well. Nothing shows it: it is a record of its own, never
//! part of a user as the admin API, LDAP or tokens see one, and it is never logged.
//!
//! A credential is used ([`Passwords::verify_proof`] with [`Proof::NtHash`]) only while the user's
//! organization is still listed: taking an organization off the list stops its credentials at once (they stay
//! sealed in the state until each user's password changes or the user is deleted).
//!
//! [`Passwords::verify`]: super::Passwords::verify
//! [`Passwords::verify_proof`]: super::Passwords::verify_proof
//! [`Proof::NtHash`]: super::Proof::NtHash

use std::sync::Arc;
use std::time::Instant;

use jeton_raft::model::{NtCredential, Organization, User};
use jeton_raft::{Command, Outcome};
use md4::{Digest, Md4};

use super::{may_sign_in, policy, schemes, stored, Passwords};
use crate::error::EdgeError;
use crate::keys::Kek;

/// NtPasswordHash (RFC 2759 §8.3): MD4 of the password in UTF-16LE, without a terminating NUL.
pub fn nt_hash(password: &str) -> [u8; 16] {
    let mut h = Md4::new();
    for unit in password.encode_utf16() {
        h.update(unit.to_le_bytes());
    }
    h.finalize().into()
}

/// What a credential is sealed under besides the key: its user and binding.
fn associated_data(user_id: &str, for_password: &[u8; 32]) -> String {
    format!("nt-credential\0{user_id}\0{}", hex::encode(for_password))
}

/// The credential of `user`'s current password whose NT hash is `hash`, sealed with `kek`.
pub fn seal(kek: &Kek, user: &User, hash: &[u8; 16]) -> Result<NtCredential, EdgeError> {
    let for_password = NtCredential::binding(user);
    let sealed = kek
        .seal(&associated_data(&user.id, &for_password), hash)
        .map_err(|_| EdgeError::Crypto("sealing an NT-hash credential failed".into()))?;
    Ok(NtCredential { user_id: user.id.clone(), sealed, for_password })
}

/// The NT hash sealed in `credential`.
pub fn open(kek: &Kek, credential: &NtCredential) -> Result<[u8; 16], EdgeError> {
    let cannot =
        || EdgeError::Crypto("an NT-hash credential does not open: another key-encryption key, or altered".into());
    let plain = kek.open(&associated_data(&credential.user_id, &credential.for_password), &credential.sealed);
    plain.map_err(|_| cannot())?.as_slice().try_into().map_err(|_| cannot())
}

impl Passwords {
    /// Whether `org`'s users get NT-hash credentials.
    pub(super) fn nt_hash_organization(&self, org: &str) -> bool {
        self.config.nt_hash_organizations.iter().any(|o| o == org)
    }

    /// The NT hash of `user`'s current credential, if their organization opted in and they have one that
    /// opens.
    pub(super) fn nt_credential(&self, user: &User) -> Option<[u8; 16]> {
        if !self.nt_hash_organization(&user.owner) {
            return None;
        }
        let credential = match self.store.nt_credential(&user.id).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(c) => c?,
            Err(e) => {
                tracing::error!(user = %user.full_name(), "reading an NT-hash credential: {e}");
                return None;
            }
        };
        if !credential.is_current_for(user) {
            // The password changed after it was derived (the state machine drops such a credential; this
            // node may not have applied that yet).
            return None;
        }
        match open(&self.kek, &credential) {
            Ok(hash) => Some(hash),
            Err(e) => {
                tracing::error!(user = %user.full_name(), "{e}");
                None
            }
        }
    }

    /// Whether a successful password sign-in of `user` should derive their NT-hash credential (see the
    /// module documentation); `password` is then what they signed in with.
    pub(super) fn wants_nt_credential(&self, org: &Organization, user: &User) -> bool {
        if !self.nt_hash_organization(&user.owner) || may_sign_in(user).is_err() || !user.ldap.is_empty() {
            return false;
        }
        if schemes::cleartext(&policy(org), &stored(user)).is_some() {
            return false;
        }
        match self.store.nt_credential(&user.id) {
            Ok(Some(c)) => {
                let c = c.get();
                !(c.user_id == user.id.as_str() && c.for_password == NtCredential::binding(user))
            }
            Ok(None) => true,
            Err(e) => {
                tracing::error!(user = %user.full_name(), "reading an NT-hash credential: {e}");
                false
            }
        }
    }

    /// Derives, seals and writes `user`'s NT-hash credential from `password`, in the background. At most
    /// one at a time per user and stored password from this node, and not again for a while after one was
    /// written (or failed: a node without a quorum does not try at every sign-in); a new password is
    /// derived at once.
    pub(super) fn derive_nt_credential(self: &Arc<Self>, user: Arc<User>, password: String) {
        let key = (user.id.clone(), NtCredential::binding(&user));
        if !self.deriving.entry(key).or_insert(()).is_fresh() {
            return;
        }
        let credential = match seal(&self.kek, &user, &nt_hash(&password)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(user = %user.full_name(), "{e}");
                return;
            }
        };
        drop(password);
        let this = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let cmd = Command::PutNtCredential { credential };
            let kind = cmd.kind();
            match this.node.write(cmd).await {
                Ok(r) if r.outcome == Outcome::Applied => {
                    this.metrics.record_write(kind, started.elapsed());
                    tracing::info!(user = %user.full_name(), "NT-hash credential derived at a password sign-in");
                }
                Ok(r) => tracing::info!(user = %user.full_name(), "NT-hash credential not stored: {:?}", r.outcome),
                Err(e) => tracing::warn!(user = %user.full_name(), "NT-hash credential not stored: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jeton_raft::node::RaftSettings;
    use jeton_raft::{PutMode, ReplicaNode};

    use super::*;
    use crate::metrics::Metrics;
    use crate::passwords::{LockoutRule, PasswordConfig, Refused, SignIn};

    const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn kek() -> Kek {
        Kek::from_hex(KEK).expect("kek")
    }

    fn user(owner: &str, name: &str, password: &str, password_type: &str) -> User {
        User {
            owner: owner.into(),
            name: name.into(),
            id: format!("id-{owner}-{name}"),
            password: password.into(),
            password_type: password_type.into(),
            ..Default::default()
        }
    }

    /// RFC 2759 §9.2: the NT hash of "clientPass".
    #[test]
    fn nt_hash_of_the_rfc_2759_example() {
        assert_eq!(hex::encode(nt_hash("clientPass")), "44ebba8d5312b8d611474411f56989ae");
    }

    /// A sealed hash opens with its key, for its user and binding only; the state never sees it in clear.
    #[test]
    fn a_sealed_credential_opens_only_where_it_was_made_for() {
        let alice = user("acme", "alice", "$2a$04$hash", "bcrypt");
        let hash = nt_hash("Alice-Password-1");
        let c = seal(&kek(), &alice, &hash).expect("seal");
        assert_eq!(c.user_id, alice.id);
        assert!(c.is_current_for(&alice));
        assert_eq!(c.sealed.len(), 12 + 16 + 16, "nonce, hash, tag");
        assert!(!c.sealed.windows(16).any(|w| w == hash), "sealed, not stored in clear");
        assert_eq!(open(&kek(), &c).expect("open"), hash);
        let other_kek = Kek::from_hex(&"ab".repeat(32)).expect("kek");
        assert!(open(&other_kek, &c).is_err(), "another key-encryption key");
        let moved = NtCredential { user_id: "id-acme-bob".into(), ..c.clone() };
        assert!(open(&kek(), &moved).is_err(), "moved to another user");
        let rebound = NtCredential { for_password: [0; 32], ..c.clone() };
        assert!(open(&kek(), &rebound).is_err(), "bound to another password");
        let mut altered = c.clone();
        altered.sealed[20] ^= 1;
        assert!(open(&kek(), &altered).is_err(), "altered");
        let truncated = NtCredential { sealed: c.sealed[..20].to_vec(), ..c };
        assert!(open(&kek(), &truncated).is_err(), "truncated");
    }

    /// A one-node cluster with acme (opted in, a master password) and globex (not), and their users.
    async fn start(nt_hash_organizations: &[&str]) -> (Arc<Passwords>, ReplicaNode, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = ReplicaNode::start(
            &dir.path().join("data"),
            1,
            "127.0.0.1:1",
            &RaftSettings::default(),
            Default::default(),
        )
        .await
        .expect("node");
        let bcrypt = |p: &str| bcrypt::hash(p, 4).expect("bcrypt");
        let org = |name: &str, master: &str| Command::PutOrganization {
            org: Organization {
                name: name.into(),
                password_type: "bcrypt".into(),
                master_password: master.into(),
                ..Default::default()
            },
            mode: PutMode::Create,
        };
        let put = |u: User| Command::PutUser { user: u, mode: PutMode::Create };
        let salted = schemes::hash(schemes::Scheme::Salt, "Carol-Password-1", "pepper").expect("hash");
        let commands = vec![
            org("acme", &bcrypt("Master-Password-1")),
            org("globex", ""),
            put(user("acme", "alice", &bcrypt("Alice-Password-1"), "bcrypt")),
            put(user("acme", "bob", &bcrypt("Bob-Password-1"), "bcrypt")),
            put(User { password_salt: "pepper".into(), ..user("acme", "carol", &salted, "salt") }),
            put(user("acme", "heidi", "Heidi-Plain-1", "plain")),
            put(User { is_forbidden: true, ..user("acme", "fred", &bcrypt("Fred-Password-1"), "bcrypt") }),
            put(user("globex", "gina", &bcrypt("Gina-Password-1"), "bcrypt")),
        ];
        assert_eq!(node.write(Command::Batch { commands }).await.expect("write").outcome, Outcome::Applied);
        let passwords = new_passwords(&node, nt_hash_organizations);
        (passwords, node, dir)
    }

    fn new_passwords(node: &ReplicaNode, nt_hash_organizations: &[&str]) -> Arc<Passwords> {
        let config = PasswordConfig {
            failure_floor: Duration::from_millis(5),
            nt_hash_organizations: nt_hash_organizations.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        };
        Arc::new(Passwords::new(config, node.clone(), Metrics::disabled(), Arc::new(kek())))
    }

    fn sign_in<'a>(organization: &'a str, login: &'a str, password: &'a str) -> SignIn<'a> {
        SignIn {
            organization,
            login,
            password,
            client_ip: None,
            lockout: LockoutRule::HomeApplication,
            ignore_case: false,
        }
    }

    /// An MS-CHAPv2-like proof: right when given the NT hash of `password`.
    fn knows(password: &str) -> super::super::Proof {
        let expected = nt_hash(password);
        super::super::Proof::NtHash(Box::new(move |h| h == &expected))
    }

    async fn challenge(p: &Arc<Passwords>, org: &str, login: &str, password: &str) -> Result<(), Refused> {
        p.verify_proof(sign_in(org, login, ""), knows(password)).await.map(|_| ())
    }

    async fn sign_in_with(p: &Arc<Passwords>, org: &str, login: &str, password: &str) {
        p.verify(sign_in(org, login, password)).await.expect("the password is right");
    }

    /// Waits for the credential of `user_id` to be in the state (it is written in the background).
    async fn credential_of(node: &ReplicaNode, user_id: &str) -> Option<NtCredential> {
        for _ in 0..100 {
            if let Some(c) = node.store.nt_credential(user_id).expect("read") {
                return Some(c.to_owned().expect("decode"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// No background write is pending: what is not in the state now will not be.
    async fn settled(p: &Arc<Passwords>) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.deriving.run_pending_tasks();
    }

    fn is_no_credential(r: Result<(), Refused>) -> bool {
        matches!(r, Err(Refused::NoChallengeCredential))
    }

    /// Before any sign-in a hashed password answers no challenge; a sign-in with the password (bcrypt in the
    /// slots, or a salted digest in place) derives the credential, which then answers the NT-hash proof of
    /// the right password only, never a cleartext (CHAP) proof; a new password drops it, and the next sign-in
    /// derives the new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_password_sign_in_derives_the_credential_challenges_then_use() {
        let (p, node, _dir) = start(&["acme"]).await;
        for (login, password) in [("alice", "Alice-Password-1"), ("carol", "Carol-Password-1")] {
            let id = format!("id-acme-{login}");
            assert!(is_no_credential(challenge(&p, "acme", login, password).await), "{login}: none yet");
            sign_in_with(&p, "acme", login, password).await;
            let c = credential_of(&node, &id).await.unwrap_or_else(|| panic!("{login}: no credential derived"));
            assert_eq!(open(&kek(), &c).expect("opens"), nt_hash(password));
            challenge(&p, "acme", login, password).await.expect("the right NT hash");
            let wrong = challenge(&p, "acme", login, "Wrong-Password-1").await;
            assert!(matches!(wrong, Err(Refused::Invalid)), "{login}: {wrong:?}");
            let chap = super::super::Proof::Cleartext(Box::new(|_| true));
            let r = p.verify_proof(sign_in("acme", login, ""), chap).await.map(|_| ());
            assert!(is_no_credential(r), "{login}: CHAP needs the password in clear");
        }
        // A new password: the credential goes with the old one.
        let alice = node.store.user("acme", "alice").unwrap().unwrap().to_owned().unwrap();
        let changed = User { password: bcrypt::hash("Alice-Password-2", 4).unwrap(), ..alice };
        let cmd = Command::PutUser { user: changed.clone(), mode: PutMode::Update };
        assert_eq!(node.write(cmd).await.expect("write").outcome, Outcome::Applied);
        assert!(node.store.nt_credential(&changed.id).unwrap().is_none());
        assert!(is_no_credential(challenge(&p, "acme", "alice", "Alice-Password-1").await));
        assert!(is_no_credential(challenge(&p, "acme", "alice", "Alice-Password-2").await));
        // The next sign-in derives it again, at once (the pause after a write is per password).
        sign_in_with(&p, "acme", "alice", "Alice-Password-2").await;
        let c = credential_of(&node, &changed.id).await.expect("derived again");
        assert!(c.is_current_for(&changed));
        challenge(&p, "acme", "alice", "Alice-Password-2").await.expect("the new password");
        assert!(matches!(challenge(&p, "acme", "alice", "Alice-Password-1").await, Err(Refused::Invalid)));
    }

    /// No credential for: a user of an organization that did not opt in, a password stored in clear (it
    /// answers challenges as it is), a sign-in with the master password, a disabled user, a wrong password.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn who_gets_no_credential() {
        let (p, node, _dir) = start(&["acme"]).await;
        sign_in_with(&p, "globex", "gina", "Gina-Password-1").await;
        sign_in_with(&p, "acme", "heidi", "Heidi-Plain-1").await;
        sign_in_with(&p, "acme", "bob", "Master-Password-1").await;
        sign_in_with(&p, "acme", "fred", "Fred-Password-1").await;
        assert!(p.verify(sign_in("acme", "alice", "Wrong-Password-1")).await.is_err());
        settled(&p).await;
        assert_eq!(node.store.count(jeton_raft::store::key::NT_CREDENTIAL), 0);
        assert!(is_no_credential(challenge(&p, "globex", "gina", "Gina-Password-1").await));
        assert!(is_no_credential(challenge(&p, "acme", "bob", "Bob-Password-1").await));
        assert!(is_no_credential(challenge(&p, "acme", "nobody", "x").await), "an unknown login");
        // heidi's password in clear answers both kinds of proof.
        challenge(&p, "acme", "heidi", "Heidi-Plain-1").await.expect("NT hash of the password in clear");
        let chap = super::super::Proof::Cleartext(Box::new(|clear| clear == "Heidi-Plain-1"));
        p.verify_proof(sign_in("acme", "heidi", ""), chap).await.expect("CHAP");
    }

    /// Proofs with nothing to check them against are refused without counting as failures: a NAS trying
    /// MS-CHAPv2 again and again before the user's first password sign-in does not lock them out of it.
    /// Wrong proofs count as usual.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proofs_without_a_credential_do_not_lock_the_account() {
        let (p, node, _dir) = start(&["acme"]).await;
        for _ in 0..8 {
            assert!(is_no_credential(challenge(&p, "acme", "alice", "Alice-Password-1").await));
        }
        assert!(node.store.signin_failures("user:id-acme-alice").unwrap().is_none());
        sign_in_with(&p, "acme", "alice", "Alice-Password-1").await;
        credential_of(&node, "id-acme-alice").await.expect("derived");
        for _ in 0..5 {
            assert!(matches!(challenge(&p, "acme", "alice", "Wrong-Password-1").await, Err(Refused::Invalid)));
        }
        let locked = challenge(&p, "acme", "alice", "Alice-Password-1").await;
        assert!(matches!(locked, Err(Refused::Locked { .. })), "{locked:?}");
    }

    /// A credential is used only while its organization is listed, and only for the stored password it was
    /// derived under.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_credential_counts_only_while_listed_and_current() {
        let (p, node, _dir) = start(&["acme"]).await;
        sign_in_with(&p, "acme", "alice", "Alice-Password-1").await;
        credential_of(&node, "id-acme-alice").await.expect("derived");
        let alice = node.store.user("acme", "alice").unwrap().unwrap().to_owned().unwrap();
        assert_eq!(p.nt_credential(&alice), Some(nt_hash("Alice-Password-1")));
        // The user as another node may already see them, with a new password: the credential is stale.
        let changed = User { password: "$2a$04$another".into(), ..alice.clone() };
        assert_eq!(p.nt_credential(&changed), None);
        assert!(p.wants_nt_credential(&Organization::default(), &changed), "a stale one is replaced");
        let org = node.store.organization("acme").unwrap().unwrap().to_owned().unwrap();
        assert!(!p.wants_nt_credential(&org, &alice), "a current one is kept");
        // Taken off the list: the same state answers no challenge.
        let unlisted = new_passwords(&node, &[]);
        assert_eq!(unlisted.nt_credential(&alice), None);
        assert!(is_no_credential(challenge(&unlisted, "acme", "alice", "Alice-Password-1").await));
        challenge(&p, "acme", "alice", "Alice-Password-1").await.expect("still listed here");
    }
}
