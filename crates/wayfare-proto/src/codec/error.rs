//! Typed decoding errors.

use thiserror::Error;

/// Why a byte string is not a valid Wayfare message (or snapshot).
///
/// Every variant names the field at fault; the remedy for a peer's message is always to drop it
/// (and, if it keeps happening, the peer), never to guess.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input is larger than [`MAX_MESSAGE_SIZE`](crate::codec::MAX_MESSAGE_SIZE).
    #[error("message is {size} bytes, over the {max}-byte cap: drop it, a peer must not send this")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The input was empty.
    #[error("empty input: a message starts with a version byte")]
    Empty,
    /// The version byte is not one this build understands.
    #[error(
        "unknown version {found} (this build speaks version {supported}): upgrade the node or drop the peer"
    )]
    UnknownVersion {
        /// Version byte found.
        found: u8,
        /// Version this build speaks.
        supported: u8,
    },
    /// The message type byte is unknown.
    #[error("unknown message type {0:#04x}: drop it")]
    UnknownMessageType(u8),
    /// The input ended while `field` was being read.
    #[error("input ended while reading {field}: the message is truncated")]
    Truncated {
        /// Field being read.
        field: &'static str,
    },
    /// Bytes were left after the last field.
    #[error("{count} trailing bytes after the message: the sender added or misframed fields")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// A length prefix is outside what the field allows.
    #[error("{field} has length {len}, allowed {min}..={max}")]
    BadLength {
        /// Field at fault.
        field: &'static str,
        /// Length found.
        len: usize,
        /// Smallest allowed length.
        min: usize,
        /// Largest allowed length.
        max: usize,
    },
    /// A field holds a value it may not have.
    #[error("{field} has an invalid value: {reason}")]
    BadValue {
        /// Field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
