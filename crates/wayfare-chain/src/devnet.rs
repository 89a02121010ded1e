//! A local network in one call: anvil from the npm toolchain, the market deployed, sellers and
//! buyers created with V3 keystores, funded, and the sellers registered.

use std::path::{Path, PathBuf};

use alloy::{
    node_bindings::{Anvil, AnvilInstance},
    primitives::{Address, B256, U256, address},
    providers::{DynProvider, Provider},
    signers::local::PrivateKeySigner,
};
use serde::{Deserialize, Serialize};

use crate::{
    error::ChainError,
    keystore::{KeyError, write_keystore},
    market::{ConnectOptions, MarketClient, connect_provider},
    toolchain::{ToolNotFound, find_tool},
    units::format_eth,
};

/// The default burn sink: a well-known dead address nobody holds the key of.
pub const DEFAULT_BURN_SINK: Address = address!("0x000000000000000000000000000000000000dEaD");

/// Anvil's chain id, the only one on which raw `--private-key`s are accepted.
pub const DEVNET_CHAIN_ID: u64 = 31337;

/// What to start.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// Where keystores, the password file and `devnet.json` go (wiped first).
    pub dir: PathBuf,
    /// Number of sellers to create and register.
    pub sellers: usize,
    /// Number of buyers to create and fund.
    pub buyers: usize,
    /// Anvil's port (0 or none: a free port).
    pub port: Option<u16>,
    /// Address anvil listens on (none: anvil's default, loopback). `0.0.0.0` lets other hosts
    /// (network namespaces in the lab) reach it.
    pub host: Option<String>,
    /// Burn sink of the deployed market.
    pub burn_sink: Address,
    /// Challenge period of the deployed market, in seconds (>= 60).
    pub challenge_period: u64,
    /// Seconds per block (none: a block per transaction).
    pub block_time: Option<u64>,
    /// Seller funds deposited at registration (pays seller burns).
    pub seller_funds: U256,
    /// ETH given to each created account.
    pub account_balance: U256,
    /// The password of every devnet keystore.
    pub password: String,
}

impl DevnetOptions {
    /// Defaults: 3 sellers, 1 buyer, challenge period 1 hour, 1 ETH seller funds, 100 ETH each.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            sellers: 3,
            buyers: 1,
            port: None,
            host: None,
            burn_sink: DEFAULT_BURN_SINK,
            challenge_period: 3600,
            block_time: None,
            seller_funds: U256::from(10u64).pow(U256::from(18u64)),
            account_balance: U256::from(100u64) * U256::from(10u64).pow(U256::from(18u64)),
            password: "wayfare-devnet".into(),
        }
    }
}

/// An account and where its key is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountInfo {
    /// The address.
    pub address: Address,
    /// Its V3 keystore (password in the devnet's password file).
    pub keystore: PathBuf,
}

/// A registered devnet seller.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SellerInfo {
    /// The seller's account (registry owner).
    pub account: AccountInfo,
    /// Its hot signer.
    pub signer: AccountInfo,
    /// Where earnings go (the account itself on a devnet).
    pub payout: Address,
    /// The X25519 public key in the registry.
    pub encryption_key: B256,
    /// The X25519 secret, hex, in a 0600 file.
    pub encryption_secret_file: PathBuf,
    /// The registry metadata.
    pub metadata: String,
    /// Seller funds deposited, in wei (decimal string).
    pub funds_wei: String,
}

/// Everything a person or a test needs to use a running devnet (also in `DIR/devnet.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DevnetInfo {
    /// HTTP JSON-RPC URL.
    pub rpc_url: String,
    /// WebSocket JSON-RPC URL.
    pub ws_url: String,
    /// Chain id (31337).
    pub chain_id: u64,
    /// The market contract.
    pub market: Address,
    /// Its burn sink.
    pub burn_sink: Address,
    /// Its challenge period in seconds.
    pub challenge_period: u64,
    /// Block of the deployment (event scans start here).
    pub deploy_block: u64,
    /// The deploying account (anvil's first dev account).
    pub deployer: Address,
    /// Registered sellers.
    pub sellers: Vec<SellerInfo>,
    /// Funded buyers.
    pub buyers: Vec<AccountInfo>,
    /// The devnet directory.
    pub dir: PathBuf,
    /// The file holding every keystore's password (0600).
    pub password_file: PathBuf,
    /// The process id of the program keeping the devnet up.
    pub pid: u32,
}

impl DevnetInfo {
    /// Reads `DIR/devnet.json` of a running devnet.
    pub fn load(dir: &Path) -> Result<Self, DevnetError> {
        let path = dir.join("devnet.json");
        let text = std::fs::read_to_string(&path).map_err(|e| DevnetError::NotRunning {
            dir: dir.to_path_buf(),
            why: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| DevnetError::NotRunning {
            dir: dir.to_path_buf(),
            why: e.to_string(),
        })
    }
}

/// Why a devnet could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// anvil is missing.
    #[error(transparent)]
    Tool(#[from] ToolNotFound),
    /// anvil did not start.
    #[error("anvil did not start: {0}. If the port is taken, pick another with --port")]
    Anvil(String),
    /// The directory is in use or unwritable.
    #[error("devnet dir {dir}: {why}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// No devnet is described there.
    #[error("no running devnet in {dir} ({why}): start one with `wayfare devnet --dir {dir}`")]
    NotRunning {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A bad option.
    #[error("{0}")]
    Options(String),
    /// A key could not be written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A chain call failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// A running devnet: anvil stops when this is dropped (call [`Devnet::shutdown`] to also
/// remove the directory).
pub struct Devnet {
    anvil: AnvilInstance,
    /// What was started.
    pub info: DevnetInfo,
    /// A client for the market signing as the deployer.
    pub deployer: MarketClient,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet").field("info", &self.info).finish()
    }
}

/// Progress of a devnet start, for a person watching.
pub type Progress<'a> = &'a mut (dyn FnMut(&str) + Send);

impl Devnet {
    /// Starts anvil, deploys the market and creates, funds and registers the accounts.
    pub async fn start(opts: DevnetOptions, progress: Progress<'_>) -> Result<Self, DevnetError> {
        if opts.challenge_period < 60 {
            return Err(DevnetError::Options(format!(
                "--challenge-period {} is too short: the market requires at least 60 seconds",
                opts.challenge_period
            )));
        }
        prepare_dir(&opts.dir)?;
        let anvil_path = find_tool("anvil")?;
        progress(&format!("starting anvil ({})", anvil_path.display()));
        let mut anvil = Anvil::at(&anvil_path)
            .chain_id(DEVNET_CHAIN_ID)
            .timeout(20_000);
        if let Some(port) = opts.port.filter(|p| *p != 0) {
            anvil = anvil.port(port);
        }
        if let Some(host) = &opts.host {
            anvil = anvil.arg("--host").arg(host);
        }
        if let Some(bt) = opts.block_time {
            anvil = anvil.block_time(bt);
        }
        let anvil = anvil
            .try_spawn()
            .map_err(|e| DevnetError::Anvil(e.to_string()))?;
        let rpc_url = anvil.endpoint();
        let deployer_key =
            PrivateKeySigner::from_bytes(&B256::from_slice(&anvil.first_key().to_bytes()))
                .map_err(|e| DevnetError::Anvil(format!("anvil's first key is unusable: {e}")))?;
        let deployer_addr = deployer_key.address();
        let provider = connect_provider(&rpc_url, Some(deployer_key)).await?;

        progress("deploying WayfareMarket");
        let (deployer, deployed) = MarketClient::deploy(
            provider.clone(),
            &rpc_url,
            deployer_addr,
            opts.burn_sink,
            opts.challenge_period,
        )
        .await?;

        let password_file = opts.dir.join("password");
        write_private(&password_file, opts.password.as_bytes(), &opts.dir)?;
        let keys_dir = opts.dir.join("keystores");

        let mut sellers = Vec::with_capacity(opts.sellers);
        for i in 1..=opts.sellers {
            progress(&format!(
                "creating and registering seller {i}/{}",
                opts.sellers
            ));
            let account = PrivateKeySigner::random();
            let signer = PrivateKeySigner::random();
            set_balance(&provider, account.address(), opts.account_balance).await?;
            set_balance(&provider, signer.address(), opts.account_balance).await?;
            let account_ks = write_keystore(
                &keys_dir,
                &format!("seller-{i}.json"),
                &account,
                &opts.password,
            )?;
            let signer_ks = write_keystore(
                &keys_dir,
                &format!("seller-{i}-signer.json"),
                &signer,
                &opts.password,
            )?;
            let secret: [u8; 32] = rand::random();
            let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
            let secret_file = keys_dir.join(format!("seller-{i}.x25519"));
            write_private(
                &secret_file,
                alloy::hex::encode(secret).as_bytes(),
                &opts.dir,
            )?;
            let metadata = format!(
                r#"{{"name":"devnet-seller-{i}","region":"lab","services":["wireguard","shadowsocks"]}}"#
            );
            let client = MarketClient::connect(ConnectOptions {
                rpc_url: rpc_url.clone(),
                market: deployer.address(),
                expected_chain_id: Some(DEVNET_CHAIN_ID),
                signer: Some(account.clone()),
            })
            .await?;
            let encryption_key = B256::from(*public.as_bytes());
            client
                .register_seller(
                    signer.address(),
                    account.address(),
                    encryption_key,
                    metadata.clone(),
                    opts.seller_funds,
                )
                .await?;
            sellers.push(SellerInfo {
                account: AccountInfo {
                    address: account.address(),
                    keystore: account_ks,
                },
                signer: AccountInfo {
                    address: signer.address(),
                    keystore: signer_ks,
                },
                payout: account.address(),
                encryption_key,
                encryption_secret_file: secret_file,
                metadata,
                funds_wei: opts.seller_funds.to_string(),
            });
        }

        let mut buyers = Vec::with_capacity(opts.buyers);
        for i in 1..=opts.buyers {
            progress(&format!("creating buyer {i}/{}", opts.buyers));
            let key = PrivateKeySigner::random();
            set_balance(&provider, key.address(), opts.account_balance).await?;
            let ks = write_keystore(&keys_dir, &format!("buyer-{i}.json"), &key, &opts.password)?;
            buyers.push(AccountInfo {
                address: key.address(),
                keystore: ks,
            });
        }

        let info = DevnetInfo {
            ws_url: anvil.ws_endpoint(),
            rpc_url,
            chain_id: DEVNET_CHAIN_ID,
            market: deployer.address(),
            burn_sink: opts.burn_sink,
            challenge_period: opts.challenge_period,
            deploy_block: deployed.block,
            deployer: deployer_addr,
            sellers,
            buyers,
            dir: opts.dir.clone(),
            password_file,
            pid: std::process::id(),
        };
        let json = serde_json::to_string_pretty(&info)
            .map_err(|e| DevnetError::Options(format!("can't serialise devnet info: {e}")))?;
        std::fs::write(opts.dir.join("devnet.json"), json).map_err(|e| DevnetError::Dir {
            dir: opts.dir.clone(),
            why: e.to_string(),
        })?;
        progress(&format!(
            "devnet ready: {} sellers registered with {} funds each",
            opts.sellers,
            format_eth(opts.seller_funds)
        ));
        Ok(Self {
            anvil,
            info,
            deployer,
        })
    }

    /// Anvil's process id.
    pub fn anvil_pid(&self) -> u32 {
        self.anvil.child().id()
    }

    /// Stops anvil and removes the devnet directory.
    pub fn shutdown(self) -> Result<(), DevnetError> {
        let dir = self.info.dir.clone();
        drop(self.anvil);
        std::fs::remove_dir_all(&dir).map_err(|e| DevnetError::Dir {
            dir: dir.clone(),
            why: format!("can't remove it: {e}"),
        })
    }
}

/// anvil's `anvil_setBalance`.
pub async fn set_balance(
    provider: &DynProvider,
    account: Address,
    wei: U256,
) -> Result<(), ChainError> {
    provider
        .raw_request::<_, ()>("anvil_setBalance".into(), (account, wei))
        .await
        .map_err(|e| ChainError::Rpc {
            what: "anvil_setBalance".into(),
            why: e.to_string(),
        })
}

/// anvil's time travel: moves the chain clock forward and mines a block.
pub async fn increase_time(provider: &DynProvider, seconds: u64) -> Result<(), ChainError> {
    provider
        .raw_request::<_, serde_json::Value>("evm_increaseTime".into(), (seconds,))
        .await
        .map_err(|e| ChainError::Rpc {
            what: "evm_increaseTime".into(),
            why: e.to_string(),
        })?;
    provider
        .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
        .await
        .map_err(|e| ChainError::Rpc {
            what: "evm_mine".into(),
            why: e.to_string(),
        })?;
    Ok(())
}

fn prepare_dir(dir: &Path) -> Result<(), DevnetError> {
    let fail = |why: String| DevnetError::Dir {
        dir: dir.to_path_buf(),
        why,
    };
    if let Ok(info) = DevnetInfo::load(dir)
        && info.pid != std::process::id()
        && Path::new(&format!("/proc/{}", info.pid)).exists()
    {
        return Err(fail(format!(
            "a devnet is already running there (pid {}): stop it with Ctrl-C, or choose another --dir",
            info.pid
        )));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| fail(format!("can't clear it: {e}")))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("can't create it: {e}")))?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8], dir: &Path) -> Result<(), DevnetError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let fail = |e: std::io::Error| DevnetError::Dir {
        dir: dir.to_path_buf(),
        why: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    f.write_all(bytes).map_err(fail)?;
    f.sync_all().map_err(fail)
}
