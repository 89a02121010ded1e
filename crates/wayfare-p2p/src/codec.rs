//! The request-response codec: raw `Message::encode()` bytes, one message per stream, capped.
//!
//! The codec only frames (it reads to the end of the substream, refusing more than the cap);
//! decoding and validation happen in the node, so a malformed request can still get a reply.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use wayfare_proto::codec::MAX_MESSAGE_SIZE;

/// The request-response protocol name.
pub const REQUEST_PROTOCOL: StreamProtocol = StreamProtocol::new("/wayfare/req/1");

/// Raw bytes in both directions, at most `max` bytes each.
#[derive(Debug, Clone, Copy)]
pub struct RawCodec {
    max: usize,
}

impl Default for RawCodec {
    fn default() -> Self {
        Self {
            max: MAX_MESSAGE_SIZE,
        }
    }
}

async fn read_capped<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    // One byte past the cap tells "too large" from "exactly at the cap".
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    io.take(limit).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message over the {max}-byte cap"),
        ));
    }
    Ok(buf)
}

async fn write_all<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
    max: usize,
) -> io::Result<()> {
    if bytes.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing to send {} bytes, over the {max}-byte cap",
                bytes.len()
            ),
        ));
    }
    io.write_all(bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_capped(io, self.max).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_capped(io, self.max).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, &req, self.max).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, &res, self.max).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    #[tokio::test]
    async fn reads_up_to_the_cap_and_refuses_more() {
        let mut c = RawCodec { max: 8 };
        let ok = c
            .read_request(&REQUEST_PROTOCOL, &mut Cursor::new(vec![1u8; 8]))
            .await;
        assert_eq!(ok.ok(), Some(vec![1u8; 8]));
        let big = c
            .read_request(&REQUEST_PROTOCOL, &mut Cursor::new(vec![1u8; 9]))
            .await;
        assert!(big.is_err());
        let mut out = Cursor::new(Vec::new());
        assert!(
            c.write_response(&REQUEST_PROTOCOL, &mut out, vec![0; 9])
                .await
                .is_err()
        );
    }
}
