//! Shared set-up for tests against a real anvil: a devnet in a temporary directory.
#![allow(dead_code)]

use alloy::{
    primitives::{Address, U256},
    signers::local::PrivateKeySigner,
};
use wayfare_chain::{
    ConnectOptions, MarketClient,
    devnet::{Devnet, DevnetOptions},
    keystore::{PasswordSource, load_keystore},
};
use wayfare_proto::{eip712, keys::SecretKey};

pub const ETH: u128 = 1_000_000_000_000_000_000;

pub struct Lab {
    pub devnet: Devnet,
    pub _dir: tempfile::TempDir,
    pub seller: PrivateKeySigner,
    pub seller_signer: PrivateKeySigner,
    pub buyer: PrivateKeySigner,
}

pub async fn lab(sellers: usize) -> Lab {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = DevnetOptions::new(dir.path().join("devnet"));
    opts.sellers = sellers;
    opts.buyers = 1;
    opts.challenge_period = 600;
    let devnet = Devnet::start(opts, &mut |_| {})
        .await
        .expect("devnet starts");
    let pw = PasswordSource::File(devnet.info.password_file.clone());
    let s = &devnet.info.sellers[0];
    let seller = load_keystore(&s.account.keystore, &pw).expect("seller keystore");
    let seller_signer = load_keystore(&s.signer.keystore, &pw).expect("signer keystore");
    let buyer = load_keystore(&devnet.info.buyers[0].keystore, &pw).expect("buyer keystore");
    Lab {
        devnet,
        _dir: dir,
        seller,
        seller_signer,
        buyer,
    }
}

impl Lab {
    pub async fn client(&self, key: &PrivateKeySigner) -> MarketClient {
        MarketClient::connect(ConnectOptions {
            rpc_url: self.devnet.info.rpc_url.clone(),
            market: self.devnet.info.market,
            expected_chain_id: Some(self.devnet.info.chain_id),
            signer: Some(key.clone()),
        })
        .await
        .expect("connect")
    }

    pub fn domain(&self) -> eip712::Eip712Domain {
        eip712::domain(self.devnet.info.chain_id, self.devnet.info.market)
    }

    /// An offer from seller 1 to the buyer, signed by the seller's signer.
    pub fn offer(&self, nonce: u64, expiry: u64) -> (eip712::Offer, [u8; 65]) {
        let offer = eip712::Offer {
            seller: self.seller.address(),
            buyer: self.buyer.address(),
            service: 1,
            pricePerMiB: 1_000_000_000_000,
            pricePerSecond: 1_000_000_000,
            sellerBurn: ETH / 100,
            buyerBurn: ETH / 200,
            minDeposit: ETH / 10,
            paymentInterval: 15,
            nonce,
            expiry,
        };
        let sig =
            secret(&self.seller_signer).sign_digest(eip712::offer_digest(&offer, &self.domain()));
        (offer, sig)
    }
}

pub fn secret(key: &PrivateKeySigner) -> SecretKey {
    SecretKey::from_bytes(&key.to_bytes().0).expect("valid key")
}

pub fn wei(v: u128) -> U256 {
    U256::from(v)
}

pub fn random_address() -> Address {
    PrivateKeySigner::random().address()
}
