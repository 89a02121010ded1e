//! The connection and sending account every `wayfare chain` subcommand shares: the RPC URL,
//! the market and chain id (or a devnet), and a V3 keystore unlocked by a password from a file,
//! an environment variable or a prompt.

use std::path::PathBuf;

use alloy_primitives::Address;
use anyhow::{Context, bail};
use wayfare_chain::{
    ConnectOptions, MarketClient,
    devnet::{DEVNET_CHAIN_ID, DevnetInfo},
    keystore::{PasswordSource, PrivateKeySigner, load_keystore, parse_private_key},
};

/// Connection and key options shared by every `chain` subcommand.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// Use a running devnet (its RPC URL, market, chain id and keys) from `wayfare devnet --dir DIR`.
    #[arg(long, global = true, env = "WAYFARE_DEVNET_DIR")]
    pub devnet: Option<PathBuf>,
    /// JSON-RPC URL of an Ethereum node (http, https, ws, wss).
    #[arg(long, global = true, env = "WAYFARE_RPC_URL")]
    pub rpc_url: Option<String>,
    /// Address of the WayfareMarket contract.
    #[arg(long, global = true, env = "WAYFARE_MARKET")]
    pub market: Option<Address>,
    /// Refuse to act unless the node is on this chain id.
    #[arg(long, global = true, env = "WAYFARE_CHAIN_ID")]
    pub chain_id: Option<u64>,
    /// A devnet account by name (seller-1, seller-1-signer, buyer-1, …); needs --devnet.
    #[arg(long = "as", global = true, value_name = "NAME")]
    pub as_name: Option<String>,
    /// V3 keystore of the account that sends transactions.
    #[arg(long, global = true, env = "WAYFARE_KEYSTORE")]
    pub keystore: Option<PathBuf>,
    /// File whose first line is the keystore password.
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the keystore password (else: the password file, else a prompt).
    #[arg(long, global = true, default_value = "WAYFARE_PASSWORD")]
    pub password_env: String,
    /// Raw private key (devnets only: refused unless the chain id is 31337).
    #[arg(
        long,
        global = true,
        env = "WAYFARE_PRIVATE_KEY",
        hide_env_values = true
    )]
    pub private_key: Option<String>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A connected market and how to print.
pub struct Ctx {
    /// The market.
    pub client: MarketClient,
    /// Print JSON.
    pub json: bool,
    /// The devnet, when --devnet named one.
    pub devnet: Option<DevnetInfo>,
}

impl ConnArgs {
    /// The sending account from --private-key, --keystore or --as (with its password), if any;
    /// and whether it came from a raw private key (devnets only).
    pub fn signer(
        &self,
        devnet: Option<&DevnetInfo>,
    ) -> anyhow::Result<(Option<PrivateKeySigner>, bool)> {
        let mut from_private_key = false;
        let signer = if let Some(pk) = &self.private_key {
            from_private_key = true;
            Some(parse_private_key(pk)?)
        } else {
            let keystore = match (&self.keystore, &self.as_name, devnet) {
                (Some(path), _, _) => Some(path.clone()),
                (None, Some(name), Some(d)) => Some(devnet_keystore(d, name)?),
                (None, Some(_), None) => {
                    bail!("--as needs --devnet DIR (the devnet that named the account)")
                }
                (None, None, _) => None,
            };
            match keystore {
                Some(path) => {
                    let source = if let Some(f) = &self.password_file {
                        PasswordSource::File(f.clone())
                    } else if std::env::var_os(&self.password_env).is_some() {
                        PasswordSource::Env(self.password_env.clone())
                    } else if let Some(d) = devnet {
                        PasswordSource::File(d.password_file.clone())
                    } else {
                        PasswordSource::Prompt
                    };
                    Some(load_keystore(&path, &source)?)
                }
                None => None,
            }
        };
        Ok((signer, from_private_key))
    }

    /// Connects to the market, checking the chain id; loads the sending account.
    pub async fn connect(&self, needs_signer: bool) -> anyhow::Result<Ctx> {
        let devnet = match &self.devnet {
            Some(dir) => Some(DevnetInfo::load(dir)?),
            None => None,
        };
        let rpc_url = self
            .rpc_url
            .clone()
            .or_else(|| devnet.as_ref().map(|d| d.rpc_url.clone()))
            .context(
                "no node to talk to: pass --rpc-url URL (or WAYFARE_RPC_URL), or --devnet DIR",
            )?;
        let market = self
            .market
            .or_else(|| devnet.as_ref().map(|d| d.market))
            .context(
                "no market address: pass --market ADDRESS (or WAYFARE_MARKET), or --devnet DIR",
            )?;
        let expected_chain_id = self
            .chain_id
            .or_else(|| devnet.as_ref().map(|d| d.chain_id));
        let (signer, from_private_key) = self.signer(devnet.as_ref())?;
        if needs_signer && signer.is_none() {
            bail!(
                "this sends a transaction: choose the account with --keystore PATH, --as NAME (devnet) or --private-key (devnet only)"
            );
        }
        let client = MarketClient::connect(ConnectOptions {
            rpc_url,
            market,
            expected_chain_id,
            signer,
        })
        .await?;
        if from_private_key && client.chain_id() != DEVNET_CHAIN_ID {
            bail!(
                "--private-key is accepted on devnets only (chain {DEVNET_CHAIN_ID}); this node is chain {}: use --keystore",
                client.chain_id()
            );
        }
        Ok(Ctx {
            client,
            json: self.json,
            devnet,
        })
    }
}

fn devnet_keystore(d: &DevnetInfo, name: &str) -> anyhow::Result<PathBuf> {
    let mut names = Vec::new();
    for (i, s) in d.sellers.iter().enumerate() {
        let n = i + 1;
        if name == format!("seller-{n}") {
            return Ok(s.account.keystore.clone());
        }
        if name == format!("seller-{n}-signer") {
            return Ok(s.signer.keystore.clone());
        }
        names.push(format!("seller-{n}"));
        names.push(format!("seller-{n}-signer"));
    }
    for (i, b) in d.buyers.iter().enumerate() {
        if name == format!("buyer-{}", i + 1) {
            return Ok(b.keystore.clone());
        }
        names.push(format!("buyer-{}", i + 1));
    }
    bail!(
        "the devnet has no account named `{name}`; it has: {}",
        names.join(", ")
    )
}
