//! Errors of the edge: [`EdgeError`] for the node itself, [`OAuthError`] for what a client is told.

use jeton_raft::{RaftError, WriteError};

/// A failure inside the node (storage, configuration, crypto). Never a client's fault.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{0}")]
    Raft(#[from] RaftError),
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("crypto: {0}")]
    Crypto(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The node answered something this code cannot make sense of (e.g. another version's reply).
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// An OAuth 2 error response (RFC 6749 §5.2): `{"error","error_description"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// HTTP status: 400, or 401 for `invalid_client`, 429/503/500 for the node's own conditions.
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        let status = if error == "invalid_client" { 401 } else { 400 };
        OAuthError { status, error, description: description.into() }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new("invalid_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new("unauthorized_client", d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new("unsupported_grant_type", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new("invalid_scope", d)
    }
    /// Too many password attempts.
    pub fn slow_down(d: impl Into<String>) -> Self {
        OAuthError { status: 429, error: "invalid_grant", description: d.into() }
    }
    /// The node cannot serve this now (no leader for a write); the client may retry.
    pub fn unavailable(d: impl Into<String>) -> Self {
        OAuthError { status: 503, error: "temporarily_unavailable", description: d.into() }
    }
    /// A failure of the node itself. The details go to the log, not to the client.
    pub fn server_error() -> Self {
        OAuthError { status: 500, error: "server_error", description: "internal error".into() }
    }

    pub fn body(&self) -> Vec<u8> {
        let mut m = serde_json::Map::new();
        m.insert("error".into(), self.error.into());
        if !self.description.is_empty() {
            m.insert("error_description".into(), self.description.clone().into());
        }
        serde_json::to_vec(&m).unwrap_or_else(|_| br#"{"error":"server_error"}"#.to_vec())
    }
}

impl From<EdgeError> for OAuthError {
    fn from(e: EdgeError) -> Self {
        match e {
            EdgeError::Write(
                WriteError::NotLeader { .. }
                | WriteError::Timeout
                | WriteError::Unavailable(_)
                | WriteError::Unknown(_)
                | WriteError::Invalid(_)
                | WriteError::Removed,
            ) => {
                tracing::warn!("write failed: {e}");
                OAuthError::unavailable(e.to_string())
            }
            other => {
                tracing::error!("internal error: {other}");
                OAuthError::server_error()
            }
        }
    }
}

impl From<RaftError> for OAuthError {
    fn from(e: RaftError) -> Self {
        EdgeError::from(e).into()
    }
}

impl From<WriteError> for OAuthError {
    fn from(e: WriteError) -> Self {
        EdgeError::from(e).into()
    }
}

impl From<serde_json::Error> for OAuthError {
    fn from(e: serde_json::Error) -> Self {
        EdgeError::from(e).into()
    }
}
