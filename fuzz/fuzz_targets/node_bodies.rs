//! What the node-to-node listener decodes (`network::decode_body`, postcard or JSON): openraft's RPCs
//! (append, vote, snapshot chunks, with the snapshot id check), the join handshake, forwarded writes
//! (`Command`), membership changes, read indexes and member checks; the answers a node decodes from its
//! peers; and log entries as sled stores them.
//!
//! What decodes must encode again and decode to the same thing: nodes pass commands on (a forwarded write
//! becomes a log entry that every follower decodes from postcard), so a value that does not survive the
//! round trip would stop replication.
//!
//! Input: a selector byte (bit 0: postcard, else JSON; the rest picks the type), then the body.
#![no_main]

use jeton_raft::cluster::{ClusterInfo, InfoRequest, JoinRequest, MembershipChange, WireError};
use jeton_raft::fuzzing::{decode_body, decode_entry, encode_entry, is_snapshot_id};
use jeton_raft::{CommandResponse, NodeId, TypeConfig};
use libfuzzer_sys::fuzz_target;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes `body` as a `T`, and checks the round trips of what decoded.
fn check<T: Serialize + DeserializeOwned>(binary: bool, body: &[u8]) -> Option<T> {
    let value: T = decode_body(binary, body).ok()?;
    // Every node re-encodes in postcard what it passes on.
    let encoded = postcard::to_allocvec(&value).expect("what decoded encodes");
    let again: T = decode_body(true, &encoded).expect("what a node encodes, a node decodes");
    assert_eq!(postcard::to_allocvec(&again).expect("encode"), encoded, "postcard round trip changed the value");
    if !binary {
        // A JSON body is answered in JSON. (A postcard body may carry what JSON cannot: a NaN.)
        let json = serde_json::to_vec(&value).expect("what decoded encodes in JSON");
        let again: T = decode_body(false, &json).expect("JSON round trip");
        assert_eq!(serde_json::to_vec(&again).expect("encode"), json, "JSON round trip changed the value");
    }
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let binary = selector & 1 == 1;
    match (selector >> 1) % 18 {
        // Requests of the listener, by path.
        0 => drop(check::<AppendEntriesRequest<TypeConfig>>(binary, body)),
        1 => drop(check::<VoteRequest<NodeId>>(binary, body)),
        2 => {
            if let Some(r) = check::<InstallSnapshotRequest<TypeConfig>>(binary, body) {
                let id = &r.meta.snapshot_id;
                if is_snapshot_id(id) {
                    assert!(!id.contains(['/', '\\', '.']) && !id.is_empty(), "{id:?} would become a path");
                }
            }
        }
        3 => drop(check::<InfoRequest>(binary, body)),
        4 => drop(check::<JoinRequest>(binary, body)),
        5 => drop(check::<jeton_raft::Command>(binary, body)),
        6 => drop(check::<MembershipChange>(binary, body)),
        7 => drop(check::<()>(binary, body)),
        8 => drop(check::<NodeId>(binary, body)),
        // Answers from peers.
        9 => drop(check::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(binary, body)),
        10 => drop(check::<Result<VoteResponse<NodeId>, RaftError<NodeId>>>(binary, body)),
        11 => drop(check::<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>>(
            binary, body,
        )),
        12 => drop(check::<ClusterInfo>(binary, body)),
        13 => drop(check::<Result<CommandResponse, WireError>>(binary, body)),
        14 => drop(check::<Result<(), WireError>>(binary, body)),
        15 => drop(check::<Result<Option<u64>, WireError>>(binary, body)),
        16 => drop(check::<bool>(binary, body)),
        // A log entry as stored (a format byte, then postcard; or JSON).
        _ => {
            if let Ok(entry) = decode_entry(body) {
                let stored = encode_entry(&entry).expect("what decoded encodes");
                let again = decode_entry(&stored).expect("a stored entry decodes");
                assert_eq!(encode_entry(&again).expect("encode"), stored);
            }
        }
    }
});
