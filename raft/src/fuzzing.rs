//! Entry points for the fuzz targets (`fuzz/`): the decoders of bytes that come from another node or from
//! the disk, which are private to their modules. Not an API: nothing here is meant for another use, and
//! each function only forwards to the code the node itself runs.

use std::io::Read;

use serde::de::DeserializeOwned;

use crate::{Entry, RaftError};

/// Decodes a node-to-node body as the listener and the client do: postcard if `binary`, else JSON.
pub fn decode_body<T: DeserializeOwned>(binary: bool, body: &[u8]) -> Result<T, String> {
    crate::network::decode_body(binary, body)
}

/// Whether a snapshot id from a peer is one this node would turn into a file name.
pub fn is_snapshot_id(id: &str) -> bool {
    crate::storage::is_snapshot_id(id)
}

/// Reads snapshot data record by record, validating each as an install does; `each` gets every record
/// that passed. Returns the number of records.
pub fn read_snapshot(
    data: &mut impl Read,
    each: impl FnMut(&[u8], &[u8]) -> Result<(), RaftError>,
) -> Result<u64, RaftError> {
    crate::storage::read_snapshot(data, each)
}

/// Decodes a stored log entry (either format).
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, RaftError> {
    crate::storage::decode_entry(bytes)
}

/// Encodes a log entry as it is stored.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, postcard::Error> {
    crate::storage::encode_entry(entry)
}

/// The node id of a certificate's `jeton:node:<id>` name.
pub fn parse_node_id(text: &str) -> Option<crate::NodeId> {
    crate::admission::parse_node_id(text)
}
