//! Snapshot data as a node installs it (from its leader, chunk by chunk, or from its own disk):
//! length-prefixed key/value pairs, each record archive validated (rkyv bytecheck) before it is written.
//! A record that passed must decode, and encode again to an archive that passes: the hot paths read
//! installed records without checking them again.
//!
//! Input: the snapshot file's bytes.
#![no_main]

use jeton_raft::fuzzing::read_snapshot;
use jeton_raft::model::{
    AcceptedAlgorithms, AcceptedIssuer, AccountingSession, Admission, Application, CasbinModel, Group, Organization,
    Permission, RefreshToken, Revocation, Role, SigninFailures, SigningKey, User,
};
use jeton_raft::store::{key, Stored};
use jeton_raft::RaftError;
use libfuzzer_sys::fuzz_target;

/// Decodes a record of type `T` and checks its archive again after a round trip.
fn round_trip<T: Stored>(value: &[u8]) -> Result<(), RaftError>
where
    T::Archived: rkyv::Portable,
{
    let record = T::decode(value).expect("a validated record decodes");
    T::validate(&record.encode().expect("a record encodes")).expect("a re-encoded record validates");
    Ok(())
}

fn decode(k: &[u8], v: &[u8]) -> Result<(), RaftError> {
    match k.get(..2).unwrap_or_default() {
        p if p == key::ORG => round_trip::<Organization>(v),
        p if p == key::USER => round_trip::<User>(v),
        p if p == key::APP => round_trip::<Application>(v),
        p if p == key::SIGNING_KEY => round_trip::<SigningKey>(v),
        p if p == key::ROLE => round_trip::<Role>(v),
        p if p == key::GROUP => round_trip::<Group>(v),
        p if p == key::REFRESH => round_trip::<RefreshToken>(v),
        p if p == key::REVOCATION => round_trip::<Revocation>(v),
        p if p == key::PERMISSION => round_trip::<Permission>(v),
        p if p == key::MODEL => round_trip::<CasbinModel>(v),
        p if p == key::ACCEPTED_ISSUER => round_trip::<AcceptedIssuer>(v),
        p if p == key::SIGNIN_FAILURES => round_trip::<SigninFailures>(v),
        p if p == key::ACCEPTED_ALGORITHMS => round_trip::<AcceptedAlgorithms>(v),
        p if p == key::ADMISSION => round_trip::<Admission>(v),
        p if p == key::ACCOUNTING => round_trip::<AccountingSession>(v),
        _ => Ok(()),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut seen = 0u64;
    let read = read_snapshot(&mut &data[..], |k, v| {
        assert!(!k.starts_with(key::META), "raft bookkeeping got through");
        seen += 1;
        decode(k, v)
    });
    if let Ok(n) = read {
        assert_eq!(n, seen);
    }
});
