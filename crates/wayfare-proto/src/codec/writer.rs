//! The encoding side of [`Reader`](super::Reader).

use alloy_primitives::{Address, B256, U256};

/// Appends big-endian fixed-width fields and `u16`-length-prefixed byte strings.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends a `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.raw(&v.to_be_bytes());
    }

    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.raw(&v.to_be_bytes());
    }

    /// Appends a big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.raw(&v.to_be_bytes());
    }

    /// Appends a big-endian `u128`.
    pub fn u128(&mut self, v: u128) {
        self.raw(&v.to_be_bytes());
    }

    /// Appends a 32-byte big-endian `U256`.
    pub fn u256(&mut self, v: &U256) {
        self.raw(&v.to_be_bytes::<32>());
    }

    /// Appends a 20-byte address.
    pub fn address(&mut self, v: &Address) {
        self.raw(v.as_slice());
    }

    /// Appends a 32-byte word.
    pub fn b256(&mut self, v: &B256) {
        self.raw(v.as_slice());
    }

    /// Appends a boolean as 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// Appends an option tag and, when present, the value.
    pub fn option<T>(&mut self, v: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match v {
            Some(v) => {
                self.bool(true);
                write(self, v);
            }
            None => self.bool(false),
        }
    }

    /// Appends a `u16` length prefix and the bytes. Callers keep `bytes` within the field's
    /// declared maximum (always below 64 KiB); longer input is cut to `u16::MAX` bytes, which the
    /// strict decoder then rejects, so a bug shows up as a decode error and never as a panic.
    pub fn bytes(&mut self, bytes: &[u8]) {
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.raw(&bytes[..usize::from(len)]);
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn string(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}
