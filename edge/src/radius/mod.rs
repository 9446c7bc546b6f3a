//! The RADIUS front end (RFC 2865, 2866, 3579, 5997, 6614).

pub mod crypto;
