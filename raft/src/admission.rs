//! Who may join the cluster: admissions and the one-time join tokens that prove them.
//!
//! A join token is `jeton-join:<cluster>:<node id>:<secret>`. It names the cluster, so a joining node can
//! name the cluster in every request it makes (the node-to-node listener refuses any request that names
//! another one, `/cluster/info` included), and the node id it admits, which must also be the id in the
//! joining node's certificate. Only the SHA-256 digest of the secret is kept, in an
//! [`Admission`](crate::model::Admission) in the replicated state, with an expiry; it is used up when the
//! id becomes a member.
//!
//! Admissions come from an administrator (`jeton cluster admit`, `POST /api/cluster-admit`) or, for the
//! nodes of a new cluster, from the bootstrap file `jeton cluster cert` fills ([`Bootstrap`]), which the
//! first node writes into the state when it creates the cluster.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Admission;
use crate::NodeId;

const PREFIX: &str = "jeton-join:";

/// The secret part of a join token. Its `Debug` shows nothing, so it never reaches a log by accident.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct TokenSecret(String);

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(…)")
    }
}

impl TokenSecret {
    /// SHA-256 of the secret, lower-case hex: what an [`Admission`] keeps.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// Whether this secret is the one `admission` was made for, and the admission is still valid at `now`.
    pub fn opens(&self, admission: &Admission, now: i64) -> Result<(), &'static str> {
        use subtle::ConstantTimeEq;
        let same: bool = self.digest().as_bytes().ct_eq(admission.token_digest.as_bytes()).into();
        if !same {
            return Err("the join token does not match this node's admission");
        }
        if admission.expires_at <= now {
            return Err("the admission has expired");
        }
        Ok(())
    }
}

/// A join token: see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinToken {
    pub cluster: String,
    pub node_id: NodeId,
    pub secret: TokenSecret,
}

impl JoinToken {
    /// A new token with 256 random bits for node `node_id` of `cluster`.
    pub fn generate(cluster: &str, node_id: NodeId) -> Result<JoinToken, String> {
        if !is_cluster_name(cluster) {
            return Err(format!("{cluster:?} is not a cluster name"));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
        Ok(JoinToken { cluster: cluster.to_string(), node_id, secret: TokenSecret(hex::encode(bytes)) })
    }

    /// Reads a token as [`JoinToken::expose`] writes it (surrounding white space is ignored).
    pub fn parse(text: &str) -> Result<JoinToken, String> {
        const BAD: &str = "not a join token (expected jeton-join:<cluster>:<node id>:<secret>)";
        let rest = text.trim().strip_prefix(PREFIX).ok_or(BAD)?;
        let mut parts = rest.rsplitn(3, ':');
        let (Some(secret), Some(id), Some(cluster)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(BAD.into());
        };
        let node_id = parse_node_id(id).ok_or(BAD)?;
        if !is_cluster_name(cluster) || secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BAD.into());
        }
        Ok(JoinToken { cluster: cluster.to_string(), node_id, secret: TokenSecret(secret.to_ascii_lowercase()) })
    }

    /// The token as text, secret included: for the operator, never for a log.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}:{}:{}", self.cluster, self.node_id, self.secret.0)
    }

    /// The admission this token opens, valid for `ttl_secs` from `now`.
    pub fn admission(&self, now: i64, ttl_secs: i64) -> Admission {
        Admission {
            node_id: self.node_id,
            token_digest: self.secret.digest(),
            expires_at: now.saturating_add(ttl_secs),
            created_at: now,
        }
    }
}

/// A node id as written in tokens and certificates: decimal digits only, at least 1.
pub(crate) fn parse_node_id(text: &str) -> Option<NodeId> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) || text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// Cluster names are what a node generates (a UUID) or what a bootstrap file names: letters, digits,
/// `-`, `_` and `.`, up to 64 bytes.
pub fn is_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What the first node of a new cluster starts with (`cluster.bootstrap`, written by `jeton cluster ca` and
/// `jeton cluster cert`): the cluster's name, and the digests of the join tokens of the nodes that will
/// join it, so that the first joins need no operator. Nothing in it is secret.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Bootstrap {
    pub cluster: String,
    /// How long the admissions stay valid once the cluster is created, in seconds.
    pub admission_ttl_secs: i64,
    pub admissions: Vec<BootstrapAdmission>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapAdmission {
    pub node_id: NodeId,
    pub token_digest: String,
}

/// Default lifetime of an admission: a day.
pub const DEFAULT_ADMISSION_TTL_SECS: i64 = 24 * 3600;

impl Bootstrap {
    /// A bootstrap for a new cluster with a fresh name and no admissions yet.
    pub fn new() -> Bootstrap {
        Bootstrap {
            cluster: uuid::Uuid::new_v4().to_string(),
            admission_ttl_secs: DEFAULT_ADMISSION_TTL_SECS,
            admissions: Vec::new(),
        }
    }

    /// Reads and checks a bootstrap file's JSON.
    pub fn parse(json: &[u8]) -> Result<Bootstrap, String> {
        let b: Bootstrap = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        if !is_cluster_name(&b.cluster) {
            return Err(format!("cluster {:?} is not a cluster name", b.cluster));
        }
        if b.admission_ttl_secs <= 0 {
            return Err("admissionTtlSecs must be positive".into());
        }
        for a in &b.admissions {
            if a.node_id == 0 || a.token_digest.len() != 64 || !a.token_digest.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("admission of node {}: needs a node id and a SHA-256 token digest", a.node_id));
            }
        }
        Ok(b)
    }

    /// Adds (or replaces) the admission of `token`'s node.
    pub fn admit(&mut self, token: &JoinToken) {
        self.admissions.retain(|a| a.node_id != token.node_id);
        self.admissions.push(BootstrapAdmission { node_id: token.node_id, token_digest: token.secret.digest() });
        self.admissions.sort_by_key(|a| a.node_id);
    }

    /// The admissions to write when the cluster is created at `now`, leaving out the first node itself.
    pub fn admissions_at(&self, now: i64, first: NodeId) -> Vec<Admission> {
        self.admissions
            .iter()
            .filter(|a| a.node_id != first)
            .map(|a| Admission {
                node_id: a.node_id,
                token_digest: a.token_digest.to_ascii_lowercase(),
                expires_at: now.saturating_add(self.admission_ttl_secs),
                created_at: now,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_only_open_their_own_unexpired_admission() {
        let t = JoinToken::generate("0b6f6a3e-2c1d-4c1e-9d7a-1f2e3d4c5b6a", 7).unwrap();
        let text = t.expose();
        assert!(text.starts_with("jeton-join:0b6f6a3e-2c1d-4c1e-9d7a-1f2e3d4c5b6a:7:"), "{text}");
        let back = JoinToken::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(back, t);
        assert!(!format!("{t:?}").contains(&t.secret.0), "Debug must not show the secret");
        let admission = t.admission(1000, 60);
        assert_eq!(admission.node_id, 7);
        assert_ne!(admission.token_digest, t.secret.0, "only a digest is kept");
        assert!(t.secret.opens(&admission, 1000).is_ok());
        assert!(t.secret.opens(&admission, 1060).is_err(), "expired");
        let other = JoinToken::generate("c", 7).unwrap();
        assert!(other.secret.opens(&admission, 1000).is_err(), "another token");
        for bad in [
            "",
            "jeton-join:c:7",
            "jeton-join::7:00",
            "jeton-join:c:07:aa",
            "jeton-join:c:0:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "jeton-join:c/..:7:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "jeton-join:c:7:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bootstrap_admits_each_id_once_and_never_the_first_node() {
        let mut b = Bootstrap::new();
        for id in [2, 1, 3] {
            b.admit(&JoinToken::generate(&b.cluster.clone(), id).unwrap());
        }
        let t = JoinToken::generate(&b.cluster.clone(), 3).unwrap();
        b.admit(&t);
        let back = Bootstrap::parse(&serde_json::to_vec(&b).unwrap()).unwrap();
        assert_eq!(back, b);
        let admissions = b.admissions_at(100, 1);
        assert_eq!(admissions.iter().map(|a| a.node_id).collect::<Vec<_>>(), vec![2, 3]);
        assert!(t.secret.opens(&admissions[1], 100).is_ok(), "the later token for node 3 replaced the first");
        assert_eq!(admissions[0].expires_at, 100 + DEFAULT_ADMISSION_TTL_SECS);
        assert!(Bootstrap::parse(br#"{"cluster":"a b","admissionTtlSecs":1}"#).is_err());
    }
}
