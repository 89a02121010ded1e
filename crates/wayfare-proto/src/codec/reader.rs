//! A strict, bounds-checked reader over a byte slice.

use alloy_primitives::{Address, B256, U256};

use super::DecodeError;

/// Reads big-endian fixed-width fields and length-prefixed byte strings; never panics.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Wraps `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Takes exactly `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u128`.
    pub fn u128(&mut self, field: &'static str) -> Result<u128, DecodeError> {
        Ok(u128::from_be_bytes(self.array(field)?))
    }

    /// Reads a 32-byte big-endian `U256`.
    pub fn u256(&mut self, field: &'static str) -> Result<U256, DecodeError> {
        Ok(U256::from_be_bytes(self.array::<32>(field)?))
    }

    /// Reads a 20-byte address.
    pub fn address(&mut self, field: &'static str) -> Result<Address, DecodeError> {
        Ok(Address::from(self.array::<20>(field)?))
    }

    /// Reads a 32-byte word.
    pub fn b256(&mut self, field: &'static str) -> Result<B256, DecodeError> {
        Ok(B256::from(self.array::<32>(field)?))
    }

    /// Reads a boolean encoded as 0 or 1; anything else is an error.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue {
                field,
                reason: "a boolean must be 0 or 1",
            }),
        }
    }

    /// Reads an option tag (0 = absent, 1 = present) and then the value.
    pub fn option<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool(field)? {
            Ok(Some(read(self)?))
        } else {
            Ok(None)
        }
    }

    /// Reads a `u16` length prefix and that many bytes, checking `min..=max`.
    pub fn bytes(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len < min || len > max {
            return Err(DecodeError::BadLength {
                field,
                len,
                min,
                max,
            });
        }
        self.take(len, field)
    }

    /// Reads a length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let raw = self.bytes(field, 0, max)?;
        core::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadValue {
                field,
                reason: "not valid UTF-8",
            })
    }

    /// Fails unless every byte has been read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.buf.len(),
            })
        }
    }
}
