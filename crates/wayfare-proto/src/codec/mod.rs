//! The wire format: one version byte, one message-type byte, then the message's fields.
//!
//! Integers are fixed-width big-endian, addresses 20 bytes, hashes and `uint256` 32 bytes,
//! signatures 65 bytes, variable fields a `u16` length then the bytes, options a 0/1 tag.
//! Decoding is strict: an unknown version or type, a truncated field, a length outside the
//! field's bounds, a value the field can't hold (an unknown enum tag, a boolean that is not 0/1,
//! a WireGuard request without a WireGuard key…) or any trailing byte is a [`DecodeError`].
//! Nothing larger than [`MAX_MESSAGE_SIZE`] is even looked at.

mod error;
mod messages;
mod reader;
mod writer;

pub use error::DecodeError;
pub use reader::Reader;
pub use writer::Writer;

/// Largest encoded message accepted or produced: 64 KiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Wire version this build speaks (and the only one it reads).
///
/// Version 2 signs every message that changes a session: `Usage` and `CloseRequest` carry the
/// service run and a signature, `Resume` the run it starts. Version-1 bytes (unsigned `Usage` and
/// `CloseRequest`) are refused as [`DecodeError::UnknownVersion`].
pub const PROTOCOL_VERSION: u8 = 2;

/// A value with a canonical, strictly decodable byte form (its fields, without any header).
pub trait WireFormat: Sized {
    /// Appends the fields of `self`.
    fn write(&self, w: &mut Writer);
    /// Reads the fields back; the caller checks for trailing bytes.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The fields alone, as bytes.
    fn to_wire(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    /// Parses exactly `bytes` (no trailing bytes, no size over [`MAX_MESSAGE_SIZE`]).
    fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                max: MAX_MESSAGE_SIZE,
            });
        }
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}
