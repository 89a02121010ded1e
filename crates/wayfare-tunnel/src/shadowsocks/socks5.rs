//! Minimal SOCKS5 server-side handshake (RFC 1928, no authentication).

use std::{io, net::SocketAddr};

use shadowsocks::relay::Address;
use shadowsocks::relay::socks5::{
    Command, HandshakeRequest, HandshakeResponse, Reply, TcpRequestHeader, TcpResponseHeader,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const AUTH_NONE: u8 = 0x00;
const AUTH_NOT_ACCEPTABLE: u8 = 0xff;

/// Read the greeting and request; answers the method selection.
pub(crate) async fn read_request(stream: &mut TcpStream) -> io::Result<TcpRequestHeader> {
    let hs = HandshakeRequest::read_from(stream)
        .await
        .map_err(io::Error::other)?;
    if !hs.methods.contains(&AUTH_NONE) {
        HandshakeResponse::new(AUTH_NOT_ACCEPTABLE)
            .write_to(stream)
            .await?;
        return Err(io::Error::other(
            "SOCKS5 client offers no 'no authentication' method",
        ));
    }
    HandshakeResponse::new(AUTH_NONE).write_to(stream).await?;
    match TcpRequestHeader::read_from(stream).await {
        Ok(h) => Ok(h),
        Err(e) => {
            let _ = reply(stream, e.as_reply(), unspecified()).await;
            Err(io::Error::other(e))
        }
    }
}

pub(crate) async fn reply(stream: &mut TcpStream, r: Reply, bound: SocketAddr) -> io::Result<()> {
    TcpResponseHeader::new(r, Address::SocketAddress(bound))
        .write_to(stream)
        .await?;
    stream.flush().await
}

pub(crate) fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

pub(crate) fn command_name(c: Command) -> &'static str {
    match c {
        Command::TcpConnect => "CONNECT",
        Command::TcpBind => "BIND",
        Command::UdpAssociate => "UDP ASSOCIATE",
    }
}
