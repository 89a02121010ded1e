//! Bad input gives one clear error (no namespaces needed).

use std::net::{Ipv4Addr, SocketAddr};

use wayfare_tunnel::{
    ExitPolicy, TunnelError,
    shadowsocks::{ClientConfig, LegacySeller, Seller, SellerConfig},
};

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    let first = Seller::bind(SellerConfig::new(SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        0,
    ))))
    .await
    .expect("first bind");
    let taken = first.local_addr();
    let e = match Seller::bind(SellerConfig::new(taken)).await {
        Err(e) => e,
        Ok(_) => panic!("second seller bound a taken port"),
    };
    assert!(matches!(e, TunnelError::Bind { .. }), "{e}");
    assert!(e.to_string().contains("pick another port"), "{e}");
    let legacy = LegacySeller::new(ExitPolicy::new(), None);
    let e = legacy.add_session("x", taken).await.expect_err("taken");
    assert!(matches!(e, TunnelError::Bind { .. }), "{e}");
}

#[tokio::test]
async fn sessions_are_unique_and_uris_parse_back() {
    let s = Seller::bind(SellerConfig::new(SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        0,
    ))))
    .await
    .expect("bind");
    let c = s.add_session("one").expect("add");
    assert!(matches!(
        s.add_session("one"),
        Err(TunnelError::DuplicateSession(_))
    ));
    let uri = c.to_uri();
    assert!(uri.starts_with("ss://2022-blake3-aes-256-gcm:"), "{uri}");
    let back = ClientConfig::from_uri(&uri).expect("parse");
    assert_eq!(back.password(), c.password());
    assert_eq!(back.server(), s.local_addr().to_string());
    let e = ClientConfig::from_uri("ss://rc4-md5:x@1.2.3.4:1").expect_err("cipher");
    assert!(e.to_string().contains("unsupported cipher"), "{e}");
}
